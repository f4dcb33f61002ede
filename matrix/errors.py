"""The errors a homeserver call can raise, one class per thing a caller may do about it.

Retryable errors (`HomeserverUnavailable`, `RateLimited`) say "try again later"; all others say
"this will not work as asked". Each carries a stable GuestGate `code` for logs, API responses
and audit rows, the HTTP status and Matrix `errcode` when there was an answer, and the
homeserver's message. No error ever holds an access token.

Spec: https://spec.matrix.org/v1.16/client-server-api/#standard-error-response
"""

from __future__ import annotations

import json
from typing import Any

import httpx

#: Longest homeserver message kept on an error (a misbehaving proxy can answer with a novel).
MAX_MESSAGE_LENGTH = 300


class MatrixError(Exception):
    """A homeserver call failed.

    Attributes:
        code: Stable GuestGate error code, e.g. ``"matrix.forbidden"``.
        status: HTTP status of the answer, or None when there was no answer.
        errcode: Matrix ``errcode`` of the answer (``"M_FORBIDDEN"``), if any.
        message: Human-readable reason, from the homeserver when it gave one.
        endpoint: ``"METHOD /path"`` of the failed request (no query string), if known.
    """

    code: str = "matrix.error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errcode: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errcode = errcode
        self.endpoint = endpoint

    def __str__(self) -> str:
        details = [str(part) for part in (self.status, self.errcode) if part is not None]
        if self.endpoint:
            details.append(self.endpoint)
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.code}: {self.message}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self!s})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep every attribute across pickling (Celery may serialise a task's exception).
        return (type(self), (self.message,), self.__dict__.copy())

    def redact(self, secret: str | None) -> None:
        """Remove `secret` from the message, in case a homeserver echoed it back."""
        if secret and secret in self.message:
            self.message = self.message.replace(secret, "[redacted]")
            self.args = (self.message,)


class HomeserverUnavailable(MatrixError):
    """The homeserver did not answer usefully: 5xx, timeout, connection error, broken body."""

    code = "matrix.unavailable"
    retryable = True


class RateLimited(MatrixError):
    """The homeserver asked us to slow down (429 ``M_LIMIT_EXCEEDED``).

    Attributes:
        retry_after_ms: How long the homeserver asked us to wait, if it said.
    """

    code = "matrix.rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errcode: str | None = None,
        endpoint: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message, status=status, errcode=errcode, endpoint=endpoint)
        self.retry_after_ms = retry_after_ms


class Forbidden(MatrixError):
    """The homeserver refused: no permission, banned, not in the room, wrong state (403)."""

    code = "matrix.forbidden"


class NotFound(MatrixError):
    """The room, user, event or endpoint does not exist (404)."""

    code = "matrix.not_found"


class UnknownToken(MatrixError):
    """The access token is unknown, expired, revoked or missing (401).

    Attributes:
        soft_logout: True when the homeserver says the session may be refreshed.
    """

    code = "matrix.unknown_token"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errcode: str | None = None,
        endpoint: str | None = None,
        soft_logout: bool = False,
    ) -> None:
        super().__init__(message, status=status, errcode=errcode, endpoint=endpoint)
        self.soft_logout = soft_logout


class UserInUse(MatrixError):
    """Registration failed because the user id is taken (``M_USER_IN_USE``)."""

    code = "matrix.user_in_use"


class ExclusiveNamespace(MatrixError):
    """The user id belongs to another appservice, or is outside ours (``M_EXCLUSIVE``)."""

    code = "matrix.exclusive"


class InvalidUsername(MatrixError):
    """The homeserver does not accept this localpart (``M_INVALID_USERNAME``)."""

    code = "matrix.invalid_username"


class BadRequest(MatrixError):
    """Any other refusal (4xx): a bug on our side or a homeserver we do not understand."""

    code = "matrix.bad_request"


# errcodes that decide the class whatever the HTTP status is.
_BY_ERRCODE: dict[str, type[MatrixError]] = {
    "M_LIMIT_EXCEEDED": RateLimited,
    "M_UNKNOWN_TOKEN": UnknownToken,
    "M_MISSING_TOKEN": UnknownToken,
    "M_USER_IN_USE": UserInUse,
    "M_EXCLUSIVE": ExclusiveNamespace,
    "M_INVALID_USERNAME": InvalidUsername,
    "M_NOT_FOUND": NotFound,
}

_BY_STATUS: dict[int, type[MatrixError]] = {
    401: UnknownToken,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> MatrixError:
    """Turn a failed homeserver answer into the matching `MatrixError`.

    Reads the standard error body ``{"errcode": ..., "error": ...}`` when there is one; a body
    that is not JSON (a proxy's HTML 502 page) is summarised, never copied.
    """
    status = response.status_code
    body = _json_object(response)
    errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else None
    message = _message(response, body)
    endpoint = _endpoint(response)

    if status >= 500:
        cls: type[MatrixError] = HomeserverUnavailable
    elif status == 401 and "flows" in body and errcode is None:
        # User-interactive authentication: the homeserver wants a password, not our token.
        return Forbidden(
            "the homeserver asks for interactive authentication",
            status=status,
            endpoint=endpoint,
        )
    elif errcode in _BY_ERRCODE:
        cls = _BY_ERRCODE[errcode]
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif 400 <= status < 500:
        cls = BadRequest
    else:
        # A redirect or an informational status: the base URL or a proxy is misconfigured.
        return MatrixError(
            f"unexpected HTTP {status} from the homeserver", status=status, endpoint=endpoint
        )

    if cls is RateLimited:
        return RateLimited(
            message,
            status=status,
            errcode=errcode,
            endpoint=endpoint,
            retry_after_ms=_retry_after_ms(response, body),
        )
    if cls is UnknownToken:
        return UnknownToken(
            message,
            status=status,
            errcode=errcode,
            endpoint=endpoint,
            soft_logout=body.get("soft_logout") is True,
        )
    return cls(message, status=status, errcode=errcode, endpoint=endpoint)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx.Response, body: dict[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return error.strip()[:MAX_MESSAGE_LENGTH]
    reason = response.reason_phrase or "error"
    if body:
        return f"HTTP {response.status_code} {reason}"
    return f"HTTP {response.status_code} {reason} (the body was not Matrix JSON)"


def _endpoint(response: httpx.Response) -> str | None:
    try:
        request = response.request
    except RuntimeError:  # a Response built by hand, without a request
        return None
    return f"{request.method} {request.url.path}"


def _retry_after_ms(response: httpx.Response, body: dict[str, Any]) -> int | None:
    """The body's ``retry_after_ms``, else the ``Retry-After`` header (whole seconds).

    Synapse sends both, the header rounded up; the body's value is the precise one.
    """
    from_body = body.get("retry_after_ms")
    if isinstance(from_body, int | float) and not isinstance(from_body, bool) and from_body >= 0:
        return int(from_body)
    header = response.headers.get("Retry-After", "").strip()
    if header.isdigit():  # the HTTP-date form is not used by homeservers; ignore it
        return int(header) * 1000
    return None
