"""The appservice API that the main homeserver calls (Matrix application service API v1).

https://spec.matrix.org/v1.12/application-service-api/#pushing-events
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from matrix.appservice import bearer_token, parse_transaction, tokens_match
from rooms.membership import appservice_transaction_receive


def _matrix_error(status: int, errcode: str, error: str) -> JsonResponse:
    return JsonResponse({"errcode": errcode, "error": error}, status=status)


def _authorization_error(request: HttpRequest) -> JsonResponse | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return _matrix_error(401, "M_UNAUTHORIZED", "Missing hs_token")
    if not tokens_match(token, settings.MAIN_HS_TOKEN):
        return _matrix_error(403, "M_FORBIDDEN", "Wrong hs_token")
    return None


@csrf_exempt
@require_http_methods(["PUT"])
def transaction_push(request: HttpRequest, txn_id: str) -> JsonResponse:
    if (denied := _authorization_error(request)) is not None:
        return denied
    try:
        events = parse_transaction(json.loads(request.body))
    except (ValueError, UnicodeDecodeError) as exc:
        return _matrix_error(400, "M_BAD_JSON", f"Malformed transaction: {exc}")
    appservice_transaction_receive(txn_id=txn_id, events=events)
    return JsonResponse({})


@csrf_exempt
@require_http_methods(["GET"])
def query_not_ours(request: HttpRequest, identifier: str) -> JsonResponse:
    """User and alias queries: GuestGate claims no users or aliases on the main server."""
    if (denied := _authorization_error(request)) is not None:
        return denied
    return _matrix_error(404, "M_NOT_FOUND", "GuestGate does not provide this")


@csrf_exempt
@require_http_methods(["POST"])
def ping(request: HttpRequest) -> JsonResponse:
    if (denied := _authorization_error(request)) is not None:
        return denied
    return JsonResponse({})
