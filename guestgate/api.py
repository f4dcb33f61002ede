"""The API's one JSON error envelope: ``{"error": {"code": "...", "message": "..."}}``.

GuestGate errors, homeserver errors and DRF's own (validation, authentication, not found)
are all mapped here, in one place, to stable codes.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from guestgate.errors import GuestGateError
from matrix import MatrixError


def _envelope(code: str, message: str, http_status: int, **extra: Any) -> Response:
    return Response({"error": {"code": code, "message": message, **extra}}, status=http_status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, GuestGateError):
        return _envelope(exc.code, exc.message, exc.status)
    if isinstance(exc, MatrixError):
        http_status = status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable else 502
        return _envelope(
            exc.code, f"The Matrix server refused or did not answer: {exc.message}", http_status
        )
    if isinstance(exc, Http404):
        return _envelope("not_found", "Not found.", status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.ValidationError):
        return _envelope(
            "invalid", "Some fields are not valid.", status.HTTP_400_BAD_REQUEST, fields=exc.detail
        )
    if isinstance(exc, exceptions.APIException):
        response = drf_exception_handler(exc, context)
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        return _envelope(str(code), str(exc.detail), response.status_code if response else 500)
    return None
