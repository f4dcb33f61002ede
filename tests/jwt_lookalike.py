"""A LiveKit JWT service look-alike for tests: what the doctor's call focus check needs.

The call's dev focus of ``make run`` (devtools) will do the same; until then, this one.
"""

from __future__ import annotations

import json
import ssl
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import httpx


class JwtLookalike(BaseHTTPRequestHandler):
    """The part of lk-jwt-service the doctor exercises: CORS for any origin, and ``POST
    /sfu/get`` that asks the token's homeserver over federation who it belongs to (as the real
    service does) and answers with a LiveKit URL nothing serves. ``refuse_from`` names a
    server whose users it refuses, as a service not reaching that server would."""

    ca_file: ClassVar[str] = ""
    refuse_from: ClassVar[list[str]] = []
    checked: ClassVar[list[str]] = []

    def do_OPTIONS(self) -> None:
        self._reply(200, None)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        token = body["openid_token"]
        server = token["matrix_server_name"]
        if server in self.refuse_from:
            self._reply(401, {"errcode": "M_UNAUTHORIZED", "error": "could not authorise"})
            return
        userinfo = httpx.get(
            f"https://{server}/_matrix/federation/v1/openid/userinfo",
            params={"access_token": token["access_token"]},
            verify=ssl.create_default_context(cafile=self.ca_file),
        )
        if userinfo.status_code != 200:
            self._reply(401, {"errcode": "M_UNAUTHORIZED", "error": "token refused"})
            return
        self.checked.append(userinfo.json()["sub"])
        self._reply(200, {"url": "ws://127.0.0.1:9", "jwt": "e30.e30.c2ln"})

    def _reply(self, status: int, body: dict[str, str] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "Accept, Content-Type")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass
