"""The call's focus: a LiveKit JWT service (MSC4195), as Element Call talks to it.

Element Call, running in a browser at GuestGate's origin, first sends the CORS preflight
(``OPTIONS <service>/sfu/get``), then ``POST <service>/sfu/get`` with the user's OpenID token;
the service checks that token with the user's homeserver over federation and answers with the
LiveKit server's URL and a JWT for it (CALL-LAB §4, §5). These calls let GuestGate check a
service the same way: any service that behaves like element-hq/lk-jwt-service will do.

MSC4195: https://github.com/matrix-org/matrix-spec-proposals/pull/4195
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from .errors import HomeserverUnavailable, error_from_response
from .http import build_http_client
from .types import OpenIdToken

SFU_GET = "/sfu/get"
#: Methods a browser sends without the preflight naming them (Fetch standard).
_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})


@dataclass(frozen=True, slots=True)
class CorsAnswer:
    """What a JWT service answered to a browser's preflight, or to its request, about CORS."""

    status: int
    allow_origin: str | None
    allow_methods: str | None = None
    allow_headers: str | None = None

    def allows_origin(self, origin: str) -> bool:
        return self.allow_origin in ("*", origin)

    def allows(self, origin: str, method: str, header: str) -> bool:
        """Whether a browser at `origin` may send `method` with `header` after this preflight."""
        return (
            200 <= self.status < 300
            and self.allows_origin(origin)
            and (method in _SAFELISTED_METHODS or _listed(self.allow_methods, method))
            and _listed(self.allow_headers, header)
        )


@dataclass(frozen=True, slots=True, repr=False)
class LivekitGrant:
    """The service's answer: where the LiveKit server is, and a token for it (never shown)."""

    url: str
    jwt: str
    cors: CorsAnswer

    def __repr__(self) -> str:
        return f"LivekitGrant(url={self.url!r}, jwt='<hidden>')"


def jwt_service_preflight(service_url: str, *, origin: str, timeout: float) -> CorsAnswer:
    """The CORS preflight a browser at `origin` sends before ``POST /sfu/get``.

    Raises `HomeserverUnavailable` when the service cannot be reached.
    """
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = _send(service_url, "OPTIONS", timeout=timeout, headers=headers)
    return _cors(response)


def jwt_service_grant(
    service_url: str,
    *,
    room_id: str,
    openid_token: OpenIdToken,
    device_id: str,
    origin: str,
    timeout: float,
) -> LivekitGrant:
    """Trade an OpenID token for a LiveKit JWT, as Element Call does (CALL-LAB §4).

    Raises the `MatrixError` matching the service's error answer (it uses Matrix's error
    body), or `HomeserverUnavailable` when it cannot be reached or answers without ``url``
    and ``jwt``.
    """
    body = {"room": room_id, "openid_token": openid_token.as_json(), "device_id": device_id}
    response = _send(
        service_url, "POST", timeout=timeout, headers={"Origin": origin}, json_body=body
    )
    if not response.is_success:
        raise error_from_response(response)
    try:
        answer = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        answer = None
    url = answer.get("url") if isinstance(answer, dict) else None
    jwt = answer.get("jwt") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not isinstance(jwt, str) or not url or not jwt:
        raise HomeserverUnavailable(
            "the JWT service answered 200 without 'url' and 'jwt'",
            status=response.status_code,
            endpoint=f"POST {SFU_GET}",
        )
    return LivekitGrant(url=url, jwt=jwt, cors=_cors(response))


def _send(
    service_url: str,
    method: str,
    *,
    timeout: float,
    headers: dict[str, str],
    json_body: object = None,
) -> httpx.Response:
    endpoint = f"{method} {SFU_GET}"
    with build_http_client(service_url, timeout=timeout) as http:
        try:
            return http.request(method, SFU_GET, headers=headers, json=json_body)
        except httpx.TimeoutException as exc:
            raise HomeserverUnavailable(
                f"the JWT service did not answer in time ({type(exc).__name__})",
                endpoint=endpoint,
            ) from exc
        except httpx.TransportError as exc:
            raise HomeserverUnavailable(
                f"could not reach the JWT service ({type(exc).__name__})", endpoint=endpoint
            ) from exc


def _cors(response: httpx.Response) -> CorsAnswer:
    return CorsAnswer(
        status=response.status_code,
        allow_origin=response.headers.get("Access-Control-Allow-Origin"),
        allow_methods=response.headers.get("Access-Control-Allow-Methods"),
        allow_headers=response.headers.get("Access-Control-Allow-Headers"),
    )


def _listed(allowed: str | None, wanted: str) -> bool:
    names = {name.strip().casefold() for name in (allowed or "").split(",")}
    return "*" in names or wanted.casefold() in names
