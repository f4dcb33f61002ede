"""GuestGate's Celery app: at-least-once delivery, the database being the record of work."""

from __future__ import annotations

import os

from celery import Celery

from guestgate.embedded_broker import use_safe_filesystem_transport
from guestgate.logs import use_django_logging_in_celery
from guestgate.requestid import connect_celery_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guestgate.settings")
use_safe_filesystem_transport()

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
    # Redis: a task not acknowledged within an hour goes back to the queue.
    broker_transport_options={"visibility_timeout": 3600},
    beat_schedule={
        "requeue-stuck-join-requests": {
            "task": "rooms.tasks.requeue_stuck_join_requests",
            "schedule": 60.0,
        },
        "refill-spare-accounts": {
            "task": "accounts.tasks.refill_spare_accounts",
            "schedule": 60.0,
        },
        "sweep-expired-accounts": {
            "task": "accounts.tasks.sweep_expired_accounts",
            "schedule": 60.0,
        },
        "reconcile-guest-accounts": {
            "task": "accounts.tasks.reconcile_guest_accounts",
            "schedule": 3600.0,
        },
        "purge-records": {"task": "accounts.tasks.purge_records", "schedule": 3600.0},
    },
)
app.autodiscover_tasks()
connect_celery_signals()  # request ids travel with tasks
use_django_logging_in_celery()  # same log format, request ids and redaction as the web


@app.on_after_configure.connect
def _embedded_broker_folders(sender: Celery, **kwargs: object) -> None:
    """Point the filesystem transport at one folder that web, worker and beat share."""
    if not str(sender.conf.broker_url).startswith("filesystem://"):
        return
    from django.conf import settings

    folder = settings.CELERY_QUEUE_DIR
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    sender.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        # How often a worker with no free thread looks for messages (and every worker, off
        # Linux). On Linux an idle worker waits for a message on inotify instead
        # (guestgate/embedded_broker.py): a task starts ~1.6 ms after it was sent.
        "polling_interval": 0.01,
        "store_processed": False,
    }
