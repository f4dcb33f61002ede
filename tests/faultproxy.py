"""A reverse proxy in front of a real homeserver that can make chosen requests fail.

The homeserver stays real; the proxy only replaces an answer (or, with ``after_forwarding``,
lets the homeserver act and then loses its answer, as a dropped connection would).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict[str, object]
    times: int
    after_forwarding: bool
    delay: float = 0.0  # seconds to hold the request first; with status 0, then forward it
    hits: int = 0


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 502,
        body: dict[str, object] | None = None,
        times: int = 1,
        after_forwarding: bool = False,
    ) -> Fault:
        fault = Fault(
            method,
            re.compile(path_pattern),
            status,
            body if body is not None else {"errcode": "M_UNKNOWN", "error": "Bad Gateway"},
            times,
            after_forwarding,
        )
        with self.lock:
            self.faults.append(fault)
        return fault

    def slow(self, method: str, path_pattern: str, *, seconds: float, times: int = 10**9) -> Fault:
        """Hold matching requests for ``seconds``, then let them through (a slow homeserver)."""
        fault = Fault(method, re.compile(path_pattern), 0, {}, times, False, delay=seconds)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.seen.clear()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path.search(path) and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def start(self) -> FaultProxy:
        proxy = self
        client = httpx.Client(base_url=self.upstream, timeout=30, follow_redirects=False)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._fault_for(self.command, self.path)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                    if fault.status == 0:
                        fault = None
                if fault is not None and not fault.after_forwarding:
                    self._answer(fault.status, json.dumps(fault.body).encode())
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = client.request(self.command, self.path, content=body, headers=headers)
                with proxy.lock:
                    proxy.seen.append((self.command, self.path.split("?")[0], upstream.status_code))
                if fault is not None:
                    self._answer(fault.status, json.dumps(fault.body).encode())
                    return
                self._answer(
                    upstream.status_code,
                    upstream.content,
                    upstream.headers.get("content-type", "application/json"),
                )

            def _answer(
                self, status: int, payload: bytes, content_type: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
