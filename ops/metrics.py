"""``/metrics`` for Prometheus: read at scrape time from where the truth is kept.

GuestGate runs as several processes (web workers, Celery workers, beat), so business numbers
are not counted in memory: they are cheap aggregate queries on the database, made when
Prometheus asks. Step durations and homeserver errors, which no table records, come from
counters in Django's cache (``ops.stepstats``). Per-process collectors (CPU, memory of
whichever web worker answered) are left out on purpose: they would describe one process.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network, ip_address

from django.conf import settings
from django.db.models import Count, F, Max, Q, Sum
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from accounts.models import GuestAccount
from guestgate.celery import app
from ops import stepstats
from ops.clientaddress import came_through_untrusted_proxy, client_address
from ops.health import broker_probe
from rooms.calls import guests_in_call_count
from rooms.membership import MAX_APPLY_ATTEMPTS
from rooms.models import (
    AppserviceTransaction,
    AuditEntry,
    CallRoom,
    InviteLink,
    JoinRequest,
    MembershipEvent,
)

logger = logging.getLogger(__name__)


def metrics_access_allowed(request: HttpRequest) -> bool:
    """From an allowed client address (directly, or through a trusted proxy), or with the
    token. A request through a proxy that is not trusted is judged by neither address: the
    proxy's says nothing about who asks, and the one in its header may be forged."""
    if settings.METRICS_TOKEN and _bearer_matches(request, settings.METRICS_TOKEN):
        return True
    if came_through_untrusted_proxy(request):
        return False
    return _address_in(client_address(request), settings.METRICS_ALLOWED_NETWORKS)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    authorization = request.headers.get("Authorization", "")
    if not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode())


def _address_in(address: str, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 on a dual-stack socket
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def metrics_exposition(accept: str) -> tuple[bytes, str]:
    """Everything GuestGate measures, and its content type: the Prometheus text format, or
    OpenMetrics when the scraper's ``Accept`` header asks for it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuestGateCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class GuestGateCollector(Collector):
    """Collects at scrape time; a source that fails is reported as down, not as an error."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "guestgate_metrics_source_up",
            "Whether a source of these metrics could be read (database, broker, cache).",
            labels=["source"],
        )
        for source, read in (
            ("database", _database_metrics),
            ("broker", _broker_metrics),
            ("cache", _cache_metrics),
        ):
            try:
                metrics = list(read())
            except Exception:
                logger.warning("metrics: could not read the %s", source, exc_info=True)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from metrics
        yield up


def _database_metrics() -> Iterator[Metric]:

    yield _by_label(
        "guestgate_guest_accounts",
        "Guest accounts kept, by status (expired ones are purged after the retention time).",
        "status",
        GuestAccount.Status.values,
        GuestAccount.objects.values_list("status").annotate(n=Count("pk")).order_by(),
    )
    yield _by_label(
        "guestgate_join_requests",
        "Join requests kept, by status.",
        "status",
        JoinRequest.Status.values,
        JoinRequest.objects.values_list("status").annotate(n=Count("pk")).order_by(),
    )
    yield _by_label(
        "guestgate_audit_entries",
        "Audit log entries kept, by action (knocked, approved, denied, banned, expired...).",
        "action",
        AuditEntry.Action.values,
        AuditEntry.objects.values_list("action").annotate(n=Count("pk")).order_by(),
    )

    pushes = AppserviceTransaction.objects.aggregate(
        count=Count("pk"), events=Sum("event_count"), last=Max("received_at")
    )
    yield CounterMetricFamily(
        "guestgate_appservice_transactions",
        "Transactions the main homeserver pushed to the appservice endpoint.",
        value=pushes["count"],
    )
    yield CounterMetricFamily(
        "guestgate_appservice_events",
        "Events in those transactions.",
        value=pushes["events"] or 0,
    )
    waiting = MembershipEvent.objects.filter(applied_at__isnull=True)
    yield _by_label(
        "guestgate_pushed_events_not_applied",
        "Membership events main pushed that are not applied: waiting (to be applied or tried "
        "again) or failed (given up after repeated errors: see the worker's log).",
        "state",
        ["waiting", "failed"],
        [
            ("waiting", waiting.filter(apply_attempts__lt=MAX_APPLY_ATTEMPTS).count()),
            ("failed", waiting.filter(apply_attempts__gte=MAX_APPLY_ATTEMPTS).count()),
        ],
    )
    yield GaugeMetricFamily(
        "guestgate_push_gap_events",
        "Membership changes main never pushed, taken from its state by reconciliation (per "
        "room, the last time it found any).",
        value=CallRoom.objects.aggregate(n=Sum("push_gap_events"))["n"] or 0,
    )
    if pushes["last"] is not None:
        yield GaugeMetricFamily(
            "guestgate_appservice_last_push_age_seconds",
            "Seconds since the main homeserver last pushed a transaction (absent: never).",
            value=max(0.0, (timezone.now() - pushes["last"]).total_seconds()),
        )

    yield GaugeMetricFamily(
        "guestgate_guests_in_call",
        "Let-in guests with at least one device in a room's call now (MatrixRTC membership on "
        "main, as pushed).",
        value=guests_in_call_count(),
    )

    now = timezone.now()
    active_links = InviteLink.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        Q(max_uses__isnull=True) | Q(use_count__lt=F("max_uses")),
        revoked_at__isnull=True,
    ).count()
    yield GaugeMetricFamily(
        "guestgate_invite_links_active",
        "Invite links that can be used now: not revoked, not expired, not used up.",
        value=active_links,
    )


def _by_label(
    name: str,
    documentation: str,
    label: str,
    known: Iterable[str],
    rows: Iterable[tuple[str, int]],
) -> GaugeMetricFamily:
    counts = dict.fromkeys(known, 0)
    counts.update(dict(rows))
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


def _broker_metrics() -> Iterator[Metric]:
    """Tasks waiting in Redis (the embedded broker of development has no cheap count)."""

    probe = broker_probe()
    if probe.tasks_waiting is not None:
        family = GaugeMetricFamily(
            "guestgate_celery_queue_length",
            "Tasks waiting in the Celery queue (Redis broker only).",
            labels=["queue"],
        )
        family.add_metric([app.conf.task_default_queue], probe.tasks_waiting)
        yield family


def _cache_metrics() -> Iterator[Metric]:
    errors = CounterMetricFamily(
        "guestgate_homeserver_errors",
        "Homeserver errors met by tasks, by GuestGate error code (retried ones included).",
        labels=["code"],
    )
    for code, count in stepstats.homeserver_error_counts().items():
        errors.add_metric([code], count)
    yield errors

    durations = HistogramMetricFamily(
        "guestgate_task_step_duration_seconds",
        "How long a task's homeserver step took (each attempt), by task.",
        labels=["step"],
    )
    for step in stepstats.step_durations():
        durations.add_metric([step.step], list(step.cumulative()), sum_value=step.sum_seconds)
    yield durations
