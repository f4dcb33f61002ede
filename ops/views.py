"""The operator's endpoints: ``/healthz`` for load balancers and monitors, ``/metrics``."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
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
