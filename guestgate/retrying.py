"""What every GuestGate task does with homeserver errors: retry what may pass, give up clearly.

Tasks stay a few lines (STYLE 7): load a row by id, call one service through ``run_retrying``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import Task
from django.db import transaction
from kombu.exceptions import OperationalError

from matrix import MatrixError, RateLimited
from ops.stepstats import run_step

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


def retry_delay(error: MatrixError, retries: int) -> float:
    """Seconds to wait: the homeserver's ``retry_after_ms`` if it gave one, else exponential
    backoff with jitter (1, 2, 4 … s, capped), so many guests do not retry in step."""
    if isinstance(error, RateLimited) and error.retry_after_ms:
        return error.retry_after_ms / 1000 + random.uniform(0, 0.5)  # noqa: S311
    return min(MAX_BACKOFF_SECONDS, 2.0**retries) * random.uniform(0.5, 1.0)  # noqa: S311


def send_after_commit(task: Task, *args: object) -> None:
    """Queue ``task`` once the current transaction commits (at once outside one).

    The database is the record of work: the rows a task works on say it is due, and a periodic
    task re-sends what is due and was not done. So a broker that is down loses nothing here:
    it is logged, and the caller's request or task goes on instead of failing after its
    commit (a guest's join answered 500 though it was recorded, and was then made twice).
    """
    transaction.on_commit(partial(task_send, task, args))


def task_send(task: Task, args: tuple[object, ...] = (), **options: Any) -> bool:
    """Queue ``task``; False, logged, when the broker cannot take it (see send_after_commit)."""
    try:
        task.apply_async(args, **options)
    except (OperationalError, OSError):
        logger.exception("%s%r not queued (is the broker down?); re-sent later", task.name, args)
        return False
    return True


def run_retrying(
    task: Task,
    action: Callable[[], object],
    *,
    on_retry: Callable[[], None] = lambda: None,
    on_give_up: Callable[[MatrixError], None],
) -> None:
    """Run ``action``; on a retryable homeserver error schedule the task again, else give up."""
    try:
        run_step(task.name, action)  # times it, counts homeserver errors (for /metrics)
    except MatrixError as error:
        retries = task.request.retries
        if error.retryable and retries < (task.max_retries or 0):
            delay = retry_delay(error, retries)
            logger.warning("%s: %s; retry %d in %.1f s", task.name, error, retries + 1, delay)
            on_retry()
            raise task.retry(countdown=delay, exc=error) from error
        logger.error("%s: giving up: %s", task.name, error)
        on_give_up(error)
