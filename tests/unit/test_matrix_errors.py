"""Homeserver answers become the right MatrixError, from real-shaped Synapse bodies."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import httpx
import pytest

from matrix import (
    BadRequest,
    ExclusiveNamespace,
    Forbidden,
    HomeserverUnavailable,
    InvalidUsername,
    MatrixError,
    NotFound,
    RateLimited,
    UnknownToken,
    UserInUse,
    error_from_response,
)

FIXTURES = Path(__file__).parent / "fixtures" / "matrix"

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def answer(status: int, fixture: str | None = None, *, content: bytes = b"", **kwargs):
    """A homeserver answer to a knock, as httpx hands it to us."""
    if fixture is not None:
        content = (FIXTURES / f"{fixture}.json").read_bytes()
    request = httpx.Request("POST", "http://hs.test/_matrix/client/v3/knock/%21AbCd1234")
    return httpx.Response(status, content=content, request=request, **kwargs)


@pytest.mark.parametrize(
    ("status", "fixture", "error_class", "code", "errcode"),
    [
        (429, "limit_exceeded", RateLimited, "matrix.rate_limited", "M_LIMIT_EXCEEDED"),
        (403, "forbidden_banned", Forbidden, "matrix.forbidden", "M_FORBIDDEN"),
        (403, "forbidden_duplicate_auth_events", Forbidden, "matrix.forbidden", "M_FORBIDDEN"),
        (401, "unknown_token_expired", UnknownToken, "matrix.unknown_token", "M_UNKNOWN_TOKEN"),
        (401, "missing_token", UnknownToken, "matrix.unknown_token", "M_MISSING_TOKEN"),
        (400, "exclusive", ExclusiveNamespace, "matrix.exclusive", "M_EXCLUSIVE"),
        (400, "user_in_use", UserInUse, "matrix.user_in_use", "M_USER_IN_USE"),
        (400, "invalid_username", InvalidUsername, "matrix.invalid_username", "M_INVALID_USERNAME"),
        (404, "not_found_event", NotFound, "matrix.not_found", "M_NOT_FOUND"),
        (404, "unrecognized", NotFound, "matrix.not_found", "M_UNRECOGNIZED"),
        (404, "no_known_servers", NotFound, "matrix.not_found", "M_UNKNOWN"),
        (405, "unrecognized", BadRequest, "matrix.bad_request", "M_UNRECOGNIZED"),
        (400, "bad_json", BadRequest, "matrix.bad_request", "M_BAD_JSON"),
        (502, "make_knock_failed", HomeserverUnavailable, "matrix.unavailable", "M_UNKNOWN"),
    ],
)
def test_an_error_body_maps_to_its_class(status, fixture, error_class, code, errcode):
    error = error_from_response(answer(status, fixture))

    assert type(error) is error_class
    assert (error.code, error.status, error.errcode) == (code, status, errcode)
    body = json.loads((FIXTURES / f"{fixture}.json").read_text())
    assert error.message == body["error"]


@pytest.mark.parametrize(
    ("status", "fixture", "retryable"),
    [
        (429, "limit_exceeded", True),
        (502, "make_knock_failed", True),
        (403, "forbidden_banned", False),
        (404, "not_found_event", False),
        (401, "unknown_token", False),
        (400, "user_in_use", False),
        (400, "exclusive", False),
        (400, "invalid_username", False),
        (400, "bad_json", False),
    ],
)
def test_only_unavailable_and_rate_limited_are_retryable(status, fixture, retryable):
    assert error_from_response(answer(status, fixture)).retryable is retryable


def test_a_proxys_html_502_is_unavailable_and_its_page_is_not_copied():
    error = error_from_response(
        answer(502, content=NGINX_502, headers={"Content-Type": "text/html"})
    )

    assert isinstance(error, HomeserverUnavailable)
    assert error.errcode is None
    assert "<html" not in str(error)
    assert "502" in str(error)


def test_a_5xx_with_a_json_body_is_unavailable_whatever_its_errcode():
    error = error_from_response(answer(500, "limit_exceeded"))

    assert isinstance(error, HomeserverUnavailable)


def test_rate_limited_reads_retry_after_ms_from_the_body_before_the_header():
    error = error_from_response(answer(429, "limit_exceeded", headers={"Retry-After": "4"}))

    assert isinstance(error, RateLimited)
    assert error.retry_after_ms == 3300


def test_rate_limited_falls_back_to_the_retry_after_header_in_seconds():
    content = b'{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests"}'
    error = error_from_response(answer(429, content=content, headers={"Retry-After": "7"}))

    assert isinstance(error, RateLimited)
    assert error.retry_after_ms == 7000


def test_rate_limited_without_any_hint_has_no_retry_after():
    error = error_from_response(answer(429, content=b"slow down"))

    assert isinstance(error, RateLimited)
    assert error.retry_after_ms is None


@pytest.mark.parametrize(
    ("fixture", "soft_logout"), [("unknown_token_expired", True), ("unknown_token", False)]
)
def test_unknown_token_says_whether_it_is_a_soft_logout(fixture, soft_logout):
    error = error_from_response(answer(401, fixture))

    assert isinstance(error, UnknownToken)
    assert error.soft_logout is soft_logout


def test_interactive_authentication_is_forbidden_not_an_unknown_token():
    error = error_from_response(answer(401, "uia_required"))

    assert isinstance(error, Forbidden)
    assert "interactive authentication" in error.message


def test_a_redirect_is_an_error_that_is_not_retried():
    error = error_from_response(answer(302, headers={"Location": "https://elsewhere.test/"}))

    assert type(error) is MatrixError
    assert not error.retryable
    assert error.status == 302


def test_str_names_the_code_message_status_errcode_and_endpoint():
    error = error_from_response(answer(403, "forbidden_banned"))

    assert str(error) == (
        "matrix.forbidden: You are banned from this room "
        "(403, M_FORBIDDEN, POST /_matrix/client/v3/knock/!AbCd1234)"
    )


def test_a_very_long_message_is_cut_short():
    content = json.dumps({"errcode": "M_UNKNOWN", "error": "x" * 5000}).encode()

    assert len(error_from_response(answer(400, content=content)).message) == 300


def test_redact_removes_a_secret_from_the_message_and_the_args():
    error = Forbidden("token syt_secret is not welcome here")

    error.redact("syt_secret")

    assert "syt_secret" not in str(error)
    assert "syt_secret" not in repr(error)
    assert error.args == ("token [redacted] is not welcome here",)


def test_an_error_survives_pickling_with_all_its_attributes():
    error = error_from_response(answer(429, "limit_exceeded"))

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is RateLimited
    assert (copy.retry_after_ms, copy.status, copy.errcode, copy.endpoint) == (
        3300,
        429,
        "M_LIMIT_EXCEEDED",
        error.endpoint,
    )
