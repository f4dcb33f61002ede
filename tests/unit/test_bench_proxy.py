"""The benchmark's reverse proxy forwards as the documented TLS proxy does: each guest's own
address appended to ``X-Forwarded-For``, from 127.0.0.1, bodies and cookies intact."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.proxy import PROXY_SOURCE, ForwardingProxy, guest_browser


class _Echo(BaseHTTPRequestHandler):
    """Says what reached it: the peer, the forwarding header, the body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        seen = {
            "peer": self.client_address[0],
            "forwarded_for": self.headers.get("X-Forwarded-For"),
            "body": body,
        }
        answer = json.dumps(seen).encode()
        self.send_response(302 if self.command == "POST" else 200)
        self.send_header("Location", "/lobby/1")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    forwarding = ForwardingProxy(f"http://127.0.0.1:{upstream.server_address[1]}").start()
    yield forwarding
    forwarding.stop()
    upstream.shutdown()
    upstream.server_close()


def test_each_guest_arrives_from_the_proxy_with_its_own_address_appended(
    proxy: ForwardingProxy,
) -> None:
    alice, bob = guest_browser(proxy.url), guest_browser(proxy.url)

    seen_alice = alice.http.get("/j/x").json()
    seen_bob = bob.http.get("/j/x").json()

    assert seen_alice["peer"] == seen_bob["peer"] == PROXY_SOURCE
    assert seen_alice["forwarded_for"] != seen_bob["forwarded_for"]
    assert seen_alice["forwarded_for"].startswith("127.1.")


def test_what_a_guest_sends_as_forwarded_for_stays_left_of_its_address(
    proxy: ForwardingProxy,
) -> None:
    guest = guest_browser(proxy.url)

    seen = guest.http.get("/j/x", headers={"X-Forwarded-For": "192.0.2.1"}).json()

    assert seen["forwarded_for"].startswith("192.0.2.1, 127.1.")


def test_a_form_post_and_its_answer_pass_through_unchanged(proxy: ForwardingProxy) -> None:
    guest = guest_browser(proxy.url)

    answer = guest.http.post("/j/x", data={"display_name": "Alice"})

    assert answer.status_code == 302
    assert answer.headers["Location"] == "/lobby/1"
    assert answer.headers.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert answer.json()["body"] == "display_name=Alice"
