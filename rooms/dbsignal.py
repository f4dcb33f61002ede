"""Hearing that another process committed a change to join requests, without polling.

- SQLite (one machine): every commit is written to the database's write-ahead log, so an
  inotify watch on its folder fires.
- PostgreSQL: a trigger on the join requests table sends ``NOTIFY guestgate_join_requests``
  (rooms/migrations/0002_join_request_change_notify.py), delivered when the transaction
  commits and never for a rollback; the watcher LISTENs on a connection of its own.
- Anything else (or SQLite off Linux, or no inotify watch to be had): None, and the watcher
  polls.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Protocol

from django.db import connection

if sys.platform.startswith("linux"):  # inotify is Linux's; elsewhere the package is absent
    from inotify_simple import INotify, flags

logger = logging.getLogger(__name__)

CHANNEL = "guestgate_join_requests"


class ChangeSignal(Protocol):
    def wait(self, timeout: float) -> bool:
        """Until the database may have changed, or ``timeout``; True if it may have."""

    def close(self) -> None: ...


class _FolderWrites:
    """A file in the SQLite database's folder (its write-ahead log) was written."""

    def __init__(self, folder: str) -> None:
        self._inotify = INotify()
        try:
            self._inotify.add_watch(folder, flags.MODIFY)
        except OSError:
            self._inotify.close()
            raise

    def wait(self, timeout: float) -> bool:
        # read() takes every event queued so far: what arrived meanwhile is the same change.
        return bool(self._inotify.read(timeout=math.ceil(timeout * 1000)))

    def close(self) -> None:
        self._inotify.close()


class _PostgresNotifications:
    def __init__(self) -> None:
        import psycopg

        params = connection.get_connection_params()
        self._connection = psycopg.connect(**params, autocommit=True)
        self._connection.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        heard = False
        for _ in self._connection.notifies(timeout=timeout, stop_after=1):
            heard = True
        if heard:  # what else arrived meanwhile counts as the same change
            for _ in self._connection.notifies(timeout=0.0):
                pass
        return heard

    def close(self) -> None:
        self._connection.close()


def change_signal() -> ChangeSignal | None:
    """How this process hears of other processes' commits, if it can."""
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:") or not sys.platform.startswith("linux"):
            return None
        try:
            return _FolderWrites(os.path.dirname(os.path.abspath(name)))
        except OSError as error:  # e.g. no inotify watches left
            logger.warning("cannot watch the database's folder (%s); polling", error)
            return None
    if connection.vendor == "postgresql":
        try:
            return _PostgresNotifications()
        except Exception as error:
            logger.warning("cannot LISTEN for join request changes (%s); polling", error)
            return None
    return None
