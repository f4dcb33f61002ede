"""GuestGate's Celery app: at-least-once delivery, the database being the record of work."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from ops.logs import use_django_logging_in_celery
from ops.requestid import connect_celery_signals
from ops.workers import connect_worker_heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guestgate.settings")

app = Celery("guestgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # A task is acknowledged when it finishes, and re-queued if its worker dies mid-way, so
    # every task must be idempotent (they are: they load a row by id and claim it).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "requeue-stuck-join-requests": {
            "task": "rooms.provisioning.requeue_stuck_join_requests",
            "schedule": 60.0,
        },
        "refill-spare-accounts": {
            "task": "accounts.spares.refill_spare_accounts",
            "schedule": 60.0,
        },
        "sweep-expired-accounts": {
            "task": "rooms.expiry.sweep_expired_accounts",
            "schedule": 60.0,
        },
        "reconcile-guest-accounts": {
            "task": "accounts.expiry.reconcile_guest_accounts",
            "schedule": 3600.0,
        },
        "purge-records": {"task": "rooms.expiry.purge_records", "schedule": 3600.0},
        # A safety net: each push queues its own run (rooms/membership.py).
        "apply-pushed-events": {
            "task": "rooms.membership.apply_pushed_events",
            "schedule": 60.0,
        },
        "reconcile-memberships": {
            "task": "rooms.membership.reconcile_memberships",
            "schedule": 60.0,
        },
        # A safety net: each change of a room's queue queues its own refresh (rooms/notices.py).
        "refresh-waiting-notices": {
            "task": "rooms.notices.refresh_waiting_notices",
            "schedule": 60.0,
        },
    },
)
# Each task lives beside the step it runs (no module looks a task up by name).
app.conf.imports = (
    "accounts.expiry",
    "accounts.spares",
    "rooms.call_rooms",
    "rooms.calls",
    "rooms.expiry",
    "rooms.joining",
    "rooms.membership",
    "rooms.moderation",
    "rooms.notices",
    "rooms.provisioning",
)
connect_celery_signals()  # request ids travel with tasks
connect_worker_heartbeat()  # pages can tell when no worker runs (ops/workers.py)
use_django_logging_in_celery()  # same log format, request ids and redaction as the web


@app.on_after_configure.connect
def _embedded_broker_folders(sender: Celery, **kwargs: object) -> None:
    """The embedded broker's folders (settings.CELERY_BROKER_TRANSPORT_OPTIONS) must exist."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "processed_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
