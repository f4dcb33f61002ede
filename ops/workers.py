"""Is a Celery worker running? Each worker says so every few seconds in the shared cache.

Nothing else shows a dead worker: tasks wait in the broker, and a guest waits at "Creating
your guest pass…" for ever (issue 12 item 7). ``make run`` and compose restart a worker that
exits; when that cannot help (it dies again at once, or nobody supervises it), the pages say
so from here: ``/healthz``, the doctor, and the lobby of a guest whose pass is being made.

The heartbeat goes to Django's cache (Redis in production, a folder for ``make run``), which
every GuestGate process shares; the broker cannot be asked (the embedded broker has no
broadcast, and a ping through Redis would wait for an answer that a dead worker never sends).
"""

from __future__ import annotations

import logging
import threading
import time

from celery import signals
from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "guestgate:worker-heartbeat"
#: A worker not heard from for this many heartbeats is taken for dead.
MISSED_HEARTBEATS = 3


def worker_heard() -> None:
    """Record that a worker is alive now (the heartbeat thread calls this)."""
    cache.set(HEARTBEAT_KEY, time.time(), timeout=None)


def worker_silent_for() -> float | None:
    """Seconds since a worker was last heard, or ``None`` if none ever was."""
    heard = cache.get(HEARTBEAT_KEY)
    if not isinstance(heard, int | float):
        return None
    return max(0.0, time.time() - heard)


def workers_running() -> bool:
    """Whether a worker was heard within the last few heartbeats."""
    silent = worker_silent_for()
    return silent is not None and silent <= _stale_after()


def _stale_after() -> float:
    return MISSED_HEARTBEATS * float(settings.WORKER_HEARTBEAT_SECONDS)


def _beat_for_ever(interval: float) -> None:
    while True:
        try:
            worker_heard()
        except Exception:  # the cache's store down: try again next time, never stop
            log.warning("could not record the worker's heartbeat in the cache", exc_info=True)
        time.sleep(interval)


def _start_heartbeat(**kwargs: object) -> None:
    """On ``worker_ready``, in the worker's main process: a daemon thread, so the heartbeat
    stops exactly when that process dies."""
    interval = float(settings.WORKER_HEARTBEAT_SECONDS)
    threading.Thread(
        target=_beat_for_ever, args=(interval,), name="guestgate-heartbeat", daemon=True
    ).start()


def connect_worker_heartbeat() -> None:
    signals.worker_ready.connect(_start_heartbeat, weak=False)
