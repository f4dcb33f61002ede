"""The API's one JSON error envelope: ``{"error": {"code": "...", "message": "..."}}``.

GuestGate errors, homeserver errors and DRF's own (validation, authentication, not found)
are all mapped here, in one place, to stable codes; and described here, for the schema.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from guestgate.errors import GuestGateError
from matrix import MatrixError

logger = logging.getLogger("django.request")


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
    # A bug: logged with its traceback, as Django logs a page's 500; the caller gets the
    # envelope (a program reading the API must not have to parse an HTML page) and no internals.
    logger.error("unexpected error in %s", context.get("view"), exc_info=exc)
    set_rollback()
    return _envelope(
        "internal_error",
        "Something went wrong on GuestGate's side. It was logged; try again later.",
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class ApiError(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs: e.g. not_found, invalid.")
    message = serializers.CharField(help_text="Words for a person.")

    def get_fields(self) -> dict[str, serializers.Field]:
        # A field named like Serializer.fields can only be added here.
        fields = super().get_fields()
        fields["fields"] = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="With code invalid: what is wrong with each field of the request.",
        )
        return fields


class ErrorEnvelope(serializers.Serializer):
    error = ApiError()


_WHEN = {
    400: "invalid: a field is wrong or unknown (`fields` says which); parse_error: not JSON.",
    403: "not_authenticated: not signed in; permission_denied: your power level in the room "
    "does not allow it, or the CSRF token is missing.",
    404: "not_found: no such room, link or request among those you moderate.",
    409: "request.already_decided: another moderator decided first.",
    415: "unsupported_media_type: send application/json.",
    500: "internal_error: a fault in GuestGate, logged on its side; try again later.",
    502: "The Matrix server refused (its errcode is the code).",
    503: "The Matrix server did not answer, or asks to wait: try again.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers an operation may give, for its ``extend_schema(responses=...)``."""
    return {
        http_status: OpenApiResponse(ErrorEnvelope, description=_WHEN[http_status])
        for http_status in statuses
    }


@extend_schema(exclude=True)
@api_view(["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
def not_found(request: Request) -> Response:
    """Any other address under /api/: the envelope, not Django's HTML page."""
    raise exceptions.NotFound("No such address in the API.")
