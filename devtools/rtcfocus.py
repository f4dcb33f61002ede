"""A stand-in for the call's focus on the local pair: an lk-jwt-service look-alike and a
silent "LiveKit" port (``python -m devtools.rtcfocus``; ``devtools.localpair.focus`` runs it).

LiveKit's server cannot be installed on our machines, so media is never tested here. What is
real is everything up to it: Element Call trades the guest's OpenID token for a LiveKit JWT
(MSC4195: ``POST /sfu/get``), and this service checks that token against the guest homeserver
for real, over federation (``/_matrix/federation/v1/openid/userinfo``, TLS with the pair's own
CA), as lk-jwt-service does. It answers with a JWT that only looks like LiveKit's (unsigned;
EC decodes its payload with ``atob``, so standard base64) and the URL of a TCP port that
accepts connections and never answers: EC then stays in its call view with the guest's call
membership sent (CALL-LAB §4), which is as far as the tests can go.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_TOKEN_LIFETIME_SECONDS = 6 * 3600


def b64(data: dict[str, Any]) -> str:
    """Standard base64 of compact JSON (EC reads the payload with ``atob``)."""
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def livekit_jwt(*, user_id: str, device_id: str, room: str) -> str:
    """A JWT shaped like lk-jwt-service's (identity, room grant), with no real signature."""
    now = int(time.time())
    payload = {
        "iss": "guestgate-dev-focus",
        "sub": f"{user_id}:{device_id}",
        "name": user_id,
        "nbf": now,
        "exp": now + _TOKEN_LIFETIME_SECONDS,
        "video": {"room": room, "roomJoin": True, "canPublish": True, "canSubscribe": True},
    }
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.{b64({'dev': 'unsigned'})}"


class Focus:
    """What the HTTP handler needs: who to trust, and how to ask them."""

    def __init__(
        self, *, guest_server_name: str, ca_file: str, livekit_url: str, origins: list[str]
    ) -> None:
        self.guest_server_name = guest_server_name
        self.livekit_url = livekit_url
        self.origins = set(origins)
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=ca_file),
            timeout=10.0,
            follow_redirects=False,
            trust_env=False,
        )

    def openid_user(self, server_name: str, access_token: str) -> str | None:
        """The user an OpenID token of ``server_name`` belongs to, asked of that server over
        federation; None if the server is not ours or does not know the token."""
        if server_name != self.guest_server_name:
            return None
        url = f"https://{server_name}/_matrix/federation/v1/openid/userinfo"
        try:
            answer = self.http.get(url, params={"access_token": access_token})
        except httpx.HTTPError:
            return None
        if answer.status_code != HTTPStatus.OK:
            return None
        sub = answer.json().get("sub")
        return sub if isinstance(sub, str) else None


class FocusHandler(BaseHTTPRequestHandler):
    server: FocusServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry nothing useful; tokens travel in bodies, never logged

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.server.focus.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
            self.send_header("Access-Control-Max-Age", "600")

    def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self._cors()
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:
        self._answer(HTTPStatus.NO_CONTENT)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(HTTPStatus.OK, {"status": "ok"})
            return
        self._answer(HTTPStatus.NOT_FOUND, {"errcode": "M_NOT_FOUND", "error": "no such path"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/sfu/get":
            # e.g. /sfu/delegate_delayed_leave: not supported, as EC's probe expects to learn.
            self._answer(HTTPStatus.NOT_FOUND, {"errcode": "M_NOT_FOUND", "error": "no such path"})
            return
        try:
            request = json.loads(raw)
            token = request["openid_token"]
            user = self.server.focus.openid_user(
                str(token["matrix_server_name"]), str(token["access_token"])
            )
            room, device = str(request["room"]), str(request.get("device_id") or "")
        except (ValueError, KeyError, TypeError):
            self._answer(HTTPStatus.BAD_REQUEST, {"errcode": "M_BAD_JSON", "error": "bad body"})
            return
        if user is None:
            self._answer(
                HTTPStatus.UNAUTHORIZED,
                {"errcode": "M_UNAUTHORIZED", "error": "the OpenID token was not accepted"},
            )
            return
        jwt = livekit_jwt(user_id=user, device_id=device, room=room)
        self._answer(HTTPStatus.OK, {"url": self.server.focus.livekit_url, "jwt": jwt})


class FocusServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], focus: Focus) -> None:
        self.focus = focus
        super().__init__(address, FocusHandler)


def silent_listener(port: int) -> threading.Thread:
    """Accept connections on ``port`` and never answer (a LiveKit that hangs, not refuses)."""
    listener = socket.create_server(("127.0.0.1", port))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            held.append(connection)  # kept open until the process ends

    thread = threading.Thread(target=accept, name="silent-livekit", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the JWT service's HTTP port")
    parser.add_argument("--livekit-port", type=int, required=True, help="the silent port")
    parser.add_argument("--guest-server-name", required=True, help="e.g. localhost:18481")
    parser.add_argument("--ca-file", required=True, help="the pair's CA certificate")
    parser.add_argument(
        "--allow-origin", action="append", default=[], help="GuestGate's origin (CORS)"
    )
    args = parser.parse_args(argv)
    livekit_url = f"ws://127.0.0.1:{args.livekit_port}"
    focus = Focus(
        guest_server_name=args.guest_server_name,
        ca_file=args.ca_file,
        livekit_url=livekit_url,
        origins=args.allow_origin,
    )
    silent_listener(args.livekit_port)
    server = FocusServer(("127.0.0.1", args.port), focus)
    print(f"focus on http://127.0.0.1:{args.port}, silent LiveKit on {livekit_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
