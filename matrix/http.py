"""The one place that builds HTTP clients for talking to homeservers.

Explicit timeouts, no redirects (a redirect would carry the token somewhere unexpected), the
access token only ever in the ``Authorization`` header, nothing secret in logs.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import certifi
import httpx

from .errors import HomeserverUnavailable, error_from_response
from .ids import escape

logger = logging.getLogger("matrix")

USER_AGENT = "GuestGate"

#: The client-server API's root (``/versions`` lives here), and its versioned prefixes.
CLIENT_ROOT = "/_matrix/client"
CLIENT_PREFIX = f"{CLIENT_ROOT}/v3"
#: Endpoints added after v3 was frozen (e.g. the appservice ping) live under v1.
CLIENT_V1_PREFIX = f"{CLIENT_ROOT}/v1"

#: Query parameters: one value or several (``via`` may be repeated).
Params = Mapping[str, str | Sequence[str]]


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one loads the CA bundle, which httpx
    would otherwise do again for every client."""
    return ssl.create_default_context(cafile=certifi.where())


def build_http_client(
    base_url: str, *, timeout: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client for one homeserver: explicit timeout, no redirects, our User-Agent."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport,
        verify=_tls_context(),
    )


def client_path(*segments: str, prefix: str = CLIENT_PREFIX) -> str:
    """A client-server API path, each segment escaped: ``client_path("rooms", room_id)``."""
    return prefix + "".join("/" + escape(segment) for segment in segments)


def send(
    http: httpx.Client,
    method: str,
    path: str,
    *,
    access_token: str | None = None,
    params: Params | None = None,
    json_body: object = None,
) -> dict[str, Any]:
    """Send one request and return its JSON object body; raise a `MatrixError` otherwise.

    Transport failures (timeouts, refused connections) become `HomeserverUnavailable`, error
    answers the matching `MatrixError`, a 2xx answer whose body is not a JSON object
    `HomeserverUnavailable` too.
    """
    body, response = _send_json(
        http, method, path, access_token=access_token, params=params, json_body=json_body
    )
    if not isinstance(body, dict):
        raise HomeserverUnavailable(
            "the homeserver answered with JSON that is not an object",
            status=response.status_code,
            endpoint=f"{method} {path}",
        )
    return body


def send_for_list(
    http: httpx.Client,
    method: str,
    path: str,
    *,
    access_token: str | None = None,
    params: Params | None = None,
) -> list[Any]:
    """Like `send`, for the few endpoints that answer with a JSON array (a room's state)."""
    body, response = _send_json(http, method, path, access_token=access_token, params=params)
    if not isinstance(body, list):
        raise HomeserverUnavailable(
            "the homeserver answered with JSON that is not a list",
            status=response.status_code,
            endpoint=f"{method} {path}",
        )
    return body


def _send_json(
    http: httpx.Client,
    method: str,
    path: str,
    *,
    access_token: str | None = None,
    params: Params | None = None,
    json_body: object = None,
) -> tuple[object, httpx.Response]:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    endpoint = f"{method} {path}"
    try:
        response = http.request(
            method,
            path,
            params=_flatten(params),
            json=json_body,
            headers=headers,
        )
    except httpx.TimeoutException as exc:
        raise HomeserverUnavailable(
            f"the homeserver did not answer in time ({type(exc).__name__})", endpoint=endpoint
        ) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise HomeserverUnavailable(
            f"could not reach the homeserver ({type(exc).__name__})", endpoint=endpoint
        ) from exc

    logger.debug("%s -> %s", endpoint, response.status_code)
    if not response.is_success:
        raise error_from_response(response)
    try:
        body = json.loads(response.content) if response.content else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise HomeserverUnavailable(
            "the homeserver answered with a body that is not JSON",
            status=response.status_code,
            endpoint=endpoint,
        ) from exc
    return body, response


def _flatten(params: Params | None) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in value)
    return tuple(pairs)


def required_str(body: Mapping[str, Any], key: str, path: str) -> str:
    """``body[key]`` as a non-empty string; a homeserver answer without it is a broken answer."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise HomeserverUnavailable(f"the homeserver's answer to {path} has no '{key}'")
    return value


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    """``body[key]`` if it is a string, else None."""
    value = body.get(key)
    return value if isinstance(value, str) else None
