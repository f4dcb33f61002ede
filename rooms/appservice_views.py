"""The appservice API that the main homeserver calls (Matrix application service API v1).

An authenticated, well-formed transaction is always answered 200 once stored: Synapse retries a
refused transaction forever and queues every later one behind it.

https://spec.matrix.org/v1.12/application-service-api/#pushing-events
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from matrix.appservice import InvalidParameter, bearer_token, parse_transaction, tokens_match
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


#: Far above any transaction Synapse sends (at most 100 events of at most 64 KiB, and 100 EDUs);
#: Django's own limit for request bodies (2.5 MB) is below what main may send.
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024


@csrf_exempt
@require_http_methods(["PUT"])
def transaction_push(request: HttpRequest, txn_id: str) -> JsonResponse:
    if (denied := _authorization_error(request)) is not None:
        return denied
    body = request.read(MAX_TRANSACTION_BYTES + 1)  # not request.body: Django's limit applies
    if len(body) > MAX_TRANSACTION_BYTES:
        return _matrix_error(413, "M_TOO_LARGE", "Transaction too large")
    try:
        events = parse_transaction(json.loads(body))
    except InvalidParameter as exc:
        return _matrix_error(400, "M_INVALID_PARAM", f"Invalid transaction: {exc}")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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
