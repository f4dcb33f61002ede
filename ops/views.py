"""The operator's endpoints: ``/healthz`` for load balancers and monitors, ``/metrics``; and
what anyone gets when a request fails inside GuestGate (``handler500``)."""

from __future__ import annotations

import sys

from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ops.health import health_check
from ops.metrics import metrics_access_allowed, metrics_exposition


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, 503 otherwise; the body says which failed and why."""
    health = health_check()
    return JsonResponse(health.as_json(), status=200 if health.status == "ok" else 503)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text (or OpenMetrics) for allowed addresses or the token; others get 404."""
    if not metrics_access_allowed(request):
        raise Http404
    body, content_type = metrics_exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


#: How long a person or program is asked to wait after "too busy".
BUSY_RETRY_AFTER_SECONDS = 5


def _database_busy(error: BaseException | None) -> bool:
    """SQLite's "database is locked": other writers held it longer than its timeout (the
    embedded default under a burst on a loaded machine). The transaction never began, so
    nothing was saved and trying again is safe."""
    return isinstance(error, OperationalError) and "database is locked" in str(error)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: Django calls it while handling the exception (already logged by then).

    A busy database is a 503 saying to try again in a few seconds; anything else a 500 that
    names no internals. Under ``/api/`` the API's JSON envelope, as its views answer.
    """
    busy = _database_busy(sys.exc_info()[1])
    status = 503 if busy else 500
    if busy:
        message = gettext(
            "GuestGate is very busy right now. Nothing was saved: please try again in a few "
            "seconds."
        )
    else:
        message = gettext(
            "Something went wrong on GuestGate's side. It was logged; please try again later."
        )
    if request.path.startswith("/api/"):
        code = "busy" if busy else "internal_error"
        response: HttpResponse = JsonResponse(
            {"error": {"code": code, "message": message}}, status=status
        )
    else:
        response = render(request, "error.html", {"message": message, "busy": busy}, status=status)
    if busy:
        response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response
