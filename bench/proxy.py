"""The benchmark's guests as they arrive in production: each from an address of its own, the
burst's through a reverse proxy that GuestGate trusts (``GUESTGATE_TRUSTED_PROXIES``).

``ForwardingProxy`` does what the documented TLS proxy does for GuestGate (deploy/README.md,
step 5), without TLS: it forwards every request to GuestGate's web server and appends the
address the request came from to ``X-Forwarded-For`` (nginx's ``$proxy_add_x_forwarded_for``).
It connects to GuestGate from 127.0.0.1, which the benchmark's profile names as the trusted
proxy, so GuestGate's limits see each guest's own address, as behind a real proxy.

``guest_browser`` gives each guest a loopback address of its own (127.1.0.1, 127.1.0.2, …: all
of 127.0.0.0/8 is this machine on Linux) as the source of its connections, so the addresses
the proxy appends are the guests' real ones, not made up by the benchmark.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from urllib.parse import urlsplit

import httpx

from devtools.guestbrowser import GuestBrowser

#: The trusted proxy's address as GuestGate sees it (the benchmark profile trusts it).
PROXY_SOURCE = "127.0.0.1"
_GUEST_ADDRESSES = (str(IPv4Address("127.1.0.0") + n) for n in itertools.count(1))
_NEXT_ADDRESS = threading.Lock()

# Hop-by-hop headers (RFC 9110, 7.6.1) and those httpx sets itself: not forwarded.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
}


def guest_browser(base_url: str) -> GuestBrowser:
    """A guest's browser whose connections come from a loopback address no other has."""
    with _NEXT_ADDRESS:
        address = next(_GUEST_ADDRESSES)
    browser = GuestBrowser(base_url)
    browser.http.close()
    browser.http = httpx.Client(
        base_url=base_url,
        transport=httpx.HTTPTransport(local_address=address),
        follow_redirects=False,
        timeout=30,
    )
    return browser


class ForwardingProxy:
    """A reverse proxy on 127.0.0.1 (a free port) in front of ``upstream``.

    Like nginx by default, each request goes to GuestGate on a connection of its own, closed
    after the answer: no connection pool shared between the guests' threads.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"not a http://host:port address: {upstream}")
        self.server = _Server(("127.0.0.1", 0), _handler(parts.hostname, parts.port))
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # a burst of guests connecting at once (gunicorn's backlog)


def _handler(host: str, port: int) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the guests' clients expect

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            forwarded = [*self.headers.get_all("X-Forwarded-For", []), self.client_address[0]]
            upstream = http.client.HTTPConnection(
                host, port, timeout=60, source_address=(PROXY_SOURCE, 0)
            )  # a lobby's long poll answers within about 20 s
            try:
                upstream.putrequest(self.command, self.path, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _NOT_FORWARDED | {"host", "x-forwarded-for"}:
                        upstream.putheader(name, value)
                upstream.putheader("X-Forwarded-For", ", ".join(forwarded))
                upstream.putheader("Content-Length", str(len(body)))
                upstream.putheader("Connection", "close")
                upstream.endheaders(body)
                answer = upstream.getresponse()
                content = answer.read()
                headers = [
                    (k, v) for k, v in answer.getheaders() if k.lower() not in _NOT_FORWARDED
                ]
            except (OSError, http.client.HTTPException) as error:
                self._send(502, [("Content-Type", "text/plain")], f"proxy: {error!r}".encode())
                return
            finally:
                upstream.close()
            self._send(answer.status, headers, content)

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass  # GuestGate logs the requests; invite links must not reach a log here

    return Forward
