"""Is GuestGate able to work right now? The checks behind ``/healthz``.

Each check answers ``ok`` and a short sentence an operator can act on; none of them says a
token or a URL. The network checks (broker, both homeservers) run side by side with short
timeouts, so the whole answer comes within about four seconds even when everything hangs.
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Sum
from django.utils import timezone

from guestgate.celery import app
from matrix import MatrixClient, MatrixError
from ops import callfocus
from ops.workers import worker_silent_for, workers_running
from rooms.membership import pushed_events_failed
from rooms.models import AppserviceTransaction, CallRoom

BROKER_TIMEOUT_SECONDS = 2
HOMESERVER_TIMEOUT_SECONDS = 3.0
#: The longest the network checks are waited for, all together.
NETWORK_DEADLINE_SECONDS = 3.5

_USERINFO = re.compile(r"//[^/@\s]*@")

Status = Literal["ok", "degraded", "down"]

CHECK_NAMES = (
    "database",
    "broker",
    "worker",
    "guest_homeserver",
    "main_homeserver",
    "appservice_pushes",
    "call_focus",
)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)  # numbers behind the detail

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"ok": data["ok"], "detail": data["detail"], **data["facts"]}


@dataclass(frozen=True)
class Health:
    status: Status
    checks: dict[str, Check]

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checks": {name: check.as_json() for name, check in self.checks.items()},
        }


def health_check() -> Health:
    """Run every check; ``down`` when the database fails (nothing works without it),
    ``degraded`` when anything else does."""
    network: dict[str, Callable[[], Check]] = {
        "broker": check_broker,
        "guest_homeserver": lambda: check_homeserver(settings.GUEST_HS_URL),
        "main_homeserver": lambda: check_homeserver(settings.MAIN_HS_URL),
        "call_focus": check_call_focus,
    }
    pool = ThreadPoolExecutor(max_workers=len(network), thread_name_prefix="healthz")
    started = time.monotonic()
    futures: dict[str, Future[Check]] = {
        name: pool.submit(contextvars.copy_context().run, run) for name, run in network.items()
    }
    # The database checks run here meanwhile: the request's own connection, no thread's.
    checks = {
        "database": check_database(),
        "worker": check_worker(),
        "appservice_pushes": check_appservice_pushes(),
    }
    for name, future in futures.items():
        remaining = NETWORK_DEADLINE_SECONDS - (time.monotonic() - started)
        try:
            checks[name] = future.result(timeout=max(0.0, remaining))
        except TimeoutError:
            checks[name] = Check(False, f"no answer within {NETWORK_DEADLINE_SECONDS:g} s")
    # Do not wait for a hung check: its own timeout ends its thread soon.
    pool.shutdown(wait=False, cancel_futures=True)

    ordered = {name: checks[name] for name in CHECK_NAMES}
    if not ordered["database"].ok:
        status: Status = "down"
    elif all(check.ok for check in ordered.values()):
        status = "ok"
    else:
        status = "degraded"
    return Health(status, ordered)


def check_database() -> Check:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver's error: say which, never the connection string
        return Check(False, f"query failed: {type(exc).__name__}")
    return Check(True, f"{connection.vendor} answers", {"ms": _ms_since(started)})


@dataclass(frozen=True)
class BrokerProbe:
    kind: str  # kombu's driver: "redis", "filesystem", ...
    tasks_waiting: int | None  # None: no cheap count (not Redis)


def broker_probe(url: str | None = None, queue: str | None = None) -> BrokerProbe:
    """Connect to Celery's broker with short timeouts; count the queue's tasks on Redis.

    Raises whatever kombu or redis raise when the broker cannot be reached.
    """

    with app.connection_for_write(
        url,
        transport_options={
            "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
            "socket_timeout": BROKER_TIMEOUT_SECONDS,
        },
    ) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
        )
        kind = str(conn.transport.driver_type)
        if kind != "redis":
            return BrokerProbe(kind, None)
        redis_client: Any = conn.default_channel.client  # type: ignore[attr-defined]
        waiting = redis_client.llen(queue or app.conf.task_default_queue)
        return BrokerProbe(kind, int(waiting))


def check_broker() -> Check:
    """Celery's broker: Redis, or the embedded folder of ``make run``."""

    started = time.monotonic()
    try:
        probe = broker_probe()
    except Exception as exc:  # kombu and redis raise many kinds
        return Check(False, f"cannot connect: {_short(exc)}")
    if probe.kind == "filesystem":
        return _embedded_broker(app.conf.broker_transport_options or {}, started)
    if probe.tasks_waiting is None:
        return Check(True, f"{probe.kind} answers", {"ms": _ms_since(started)})
    return Check(
        True,
        f"{probe.kind} answers; {probe.tasks_waiting} task(s) waiting",
        {"ms": _ms_since(started), "tasks_waiting": probe.tasks_waiting},
    )


def check_worker() -> Check:
    """A Celery worker heard within the last few heartbeats (ops/workers.py)."""
    try:
        silent = worker_silent_for()
    except Exception as exc:  # the cache's Redis down
        return Check(False, f"cannot read the workers' heartbeat from the cache: {_short(exc)}")
    if silent is None:
        return Check(
            False,
            "no Celery worker has ever reported: start one (celery -A guestgate worker); "
            "until then guests wait at 'Creating your guest pass…'",
        )
    if not workers_running():
        return Check(
            False,
            f"no Celery worker heard for {_duration(int(silent))}: guests wait at "
            "'Creating your guest pass…' until one runs (see the worker's log)",
            {"silent_seconds": round(silent, 1)},
        )
    return Check(
        True, f"a worker was heard {silent:.0f} s ago", {"silent_seconds": round(silent, 1)}
    )


def _embedded_broker(options: dict[str, Any], started: float) -> Check:
    folder = str(options.get("data_folder_in", ""))
    if not folder or not os.access(folder, os.W_OK):
        return Check(False, "the embedded broker's folder is missing or not writable")
    return Check(
        True, "embedded broker (files): its folder is writable", {"ms": _ms_since(started)}
    )


def check_homeserver(base_url: str) -> Check:
    """GuestGate's one homeserver check: ``/healthz``, the doctor and the home page use it.

    ``GET /_matrix/client/versions``: unauthenticated, so no token is at stake; asked once,
    with a short timeout.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientversions
    """
    if not base_url:
        return Check(False, "not configured")
    started = time.monotonic()
    try:
        with MatrixClient(
            base_url=base_url, access_token=None, timeout=HOMESERVER_TIMEOUT_SECONDS, retries=0
        ) as client:
            newest = client.versions().newest
    except MatrixError as error:
        return Check(False, f"{error.code}: {error.message}", {"ms": _ms_since(started)})
    return Check(True, f"answers (Matrix {newest or 'no version'})", {"ms": _ms_since(started)})


def check_homeserver_feature(base_url: str, feature: str) -> bool | None:
    """Whether the homeserver announces an unstable feature in ``/versions``; None if it did
    not answer."""
    try:
        with MatrixClient(
            base_url=base_url, access_token=None, timeout=HOMESERVER_TIMEOUT_SECONDS, retries=0
        ) as client:
            return client.versions().unstable_features.get(feature) is True
    except MatrixError:
        return None


def check_call_focus() -> Check:
    """The LiveKit JWT services answer a guest's browser (the CORS preflight Element Call sends
    first): the call in the lobby starts only if they do. The doctor checks more (a token)."""
    urls = callfocus.jwt_service_urls()
    if not urls:
        if callfocus.embedded_call():
            return Check(False, "no LiveKit JWT service configured: the call cannot start")
        return Check(True, "not used: the call opens elsewhere")
    started = time.monotonic()
    for number, url in enumerate(urls, start=1):
        problem = callfocus.preflight_problem(url, timeout=HOMESERVER_TIMEOUT_SECONDS)
        if problem is not None:
            return Check(False, f"JWT service {number} {problem[0]}", {"ms": _ms_since(started)})
    return Check(
        True, f"{len(urls)} JWT service(s) answer a guest's browser", {"ms": _ms_since(started)}
    )


#: How long /healthz reports membership changes main never pushed (found by reconciliation).
PUSH_GAP_REPORT_SECONDS = 900


def check_appservice_pushes() -> Check:
    """The main homeserver pushes to our appservice endpoint; a long silence may mean its
    registration points elsewhere or it cannot reach us."""

    stale_after = settings.HEALTH_PUSH_STALE_SECONDS
    try:
        last = AppserviceTransaction.objects.aggregate(last=Max("received_at"))["last"]
        not_applied = pushed_events_failed()
    except Exception as exc:
        return Check(False, f"cannot read: {type(exc).__name__}")
    if not_applied:
        return Check(
            False,
            f"{not_applied} pushed membership event(s) could not be applied: see the "
            "worker's log and the apply_error of rooms.MembershipEvent",
            {"events_not_applied": not_applied},
        )
    gap = CallRoom.objects.filter(
        push_gap_at__gte=timezone.now() - timedelta(seconds=PUSH_GAP_REPORT_SECONDS)
    ).aggregate(rooms=Count("pk"), events=Sum("push_gap_events"), late=Max("push_gap_seconds"))
    if gap["rooms"]:
        return Check(
            False,
            f"main's pushes were late or lost: in {gap['rooms']} room(s), {gap['events']} "
            f"membership change(s) were taken from main's state, up to {_duration(gap['late'])} "
            "late. Is main queueing transactions behind one GuestGate refused (its log says)?",
            {"push_gap_events": gap["events"], "push_gap_seconds": gap["late"]},
        )
    if last is None:
        return Check(True, "no push received yet", {"seconds_since_last": None})
    age = max(0, int((timezone.now() - last).total_seconds()))
    facts = {"seconds_since_last": age}
    if age > stale_after:
        return Check(
            False,
            f"last push {_duration(age)} ago, longer than {_duration(stale_after)}: does the "
            "main homeserver's appservice registration point at GuestGate?",
            facts,
        )
    return Check(True, f"last push {_duration(age)} ago", facts)


def _duration(seconds: int) -> str:
    return str(timedelta(seconds=seconds)) if seconds >= 60 else f"{seconds} s"


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _short(exc: Exception) -> str:
    """The error's first line, without any ``user:password@`` a URL in it might hold."""
    lines = str(exc).strip().splitlines()
    text = _USERINFO.sub("//", lines[0])[:160] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
