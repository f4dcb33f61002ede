"""The test database's flush, tried again when PostgreSQL makes it a deadlock's victim.

Integration and browser tests share the database with GuestGate's real processes, so each
test ends with a flush (``TRUNCATE`` of every table) while main may still be pushing events
that the web server stores and the worker applies. A push that holds one table and waits for
another that the ``TRUNCATE`` already holds is a deadlock; PostgreSQL aborts one of the two.
When it aborts a push, main sends the transaction again; when it aborts the flush, the test
errored (seen in CI). The flush runs in one transaction, so trying it again is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError
from django.db import OperationalError

DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE
ATTEMPTS = 5


def _is_deadlock(error: BaseException) -> bool:
    cause = error.__cause__ if isinstance(error, CommandError) else error
    if not isinstance(cause, OperationalError):
        return False
    return getattr(cause.__cause__, "sqlstate", None) == DEADLOCK_DETECTED


def retrying_deadlocks(flush: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``TransactionTestCase._fixture_teardown`` (or any flush) to try again, up to
    ``ATTEMPTS`` times, when PostgreSQL aborted it to break a deadlock."""

    def flush_retrying(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return flush(*args, **kwargs)
            except (CommandError, OperationalError) as error:
                if attempt == ATTEMPTS or not _is_deadlock(error):
                    raise
                time.sleep(0.1 * attempt)
        raise AssertionError("unreachable")

    return flush_retrying
