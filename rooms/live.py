"""Waking long polls when a join request changes, at the cost of one query per tick per
process, however many guests and moderators are waiting.

One watcher thread per process (started when the first poll waits, stopped when none is
left) asks the database which join requests changed since its last look, and wakes the
polls waiting on them or on their room. Works across processes (the worker's changes are
seen too) with nothing but the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

from rooms.models import JoinRequest

TICK_SECONDS = 0.05
# Rows are read again for this long after they changed: a transaction that commits a little
# after its updated_at was set is still seen.
OVERLAP = timedelta(seconds=2)
FORGET_AFTER_SECONDS = 120.0


class ChangeWatcher:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._versions: dict[str, tuple[int, float]] = {}  # public id -> (version, seen at)
        self._rooms: dict[int, tuple[int, float]] = {}  # room pk -> (change count, seen at)

    def wait_for_request(self, public_id: str, version: int, timeout: float) -> None:
        """Return when the request's version is no longer ``version``, or after ``timeout``."""
        self._wait(lambda: self._versions.get(public_id, (version, 0.0))[0] > version, timeout)

    def room_mark(self, room_pk: int) -> int:
        with self._changed:
            return self._rooms.get(room_pk, (0, 0.0))[0]

    def wait_for_room(self, room_pk: int, mark: int, timeout: float) -> None:
        """Return when a request of the room changed after ``room_mark`` gave ``mark``."""
        self._wait(lambda: self._rooms.get(room_pk, (0, 0.0))[0] != mark, timeout)

    def _wait(self, changed: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="guestgate-changes", daemon=True
                )
                self._thread.start()
            try:
                while not changed() and (left := deadline - time.monotonic()) > 0:
                    self._changed.wait(left)
            finally:
                self._waiting -= 1

    def _run(self) -> None:
        since = timezone.now() - OVERLAP
        try:
            while True:
                with self._changed:
                    if self._waiting == 0:
                        self._thread = None
                        return
                now = timezone.now()
                rows = list(
                    JoinRequest.objects.filter(updated_at__gte=since - OVERLAP).values_list(
                        "public_id", "version", "room_id"
                    )
                )
                since = now
                self._record(rows)
                time.sleep(TICK_SECONDS)
        finally:
            connection.close()
            close_old_connections()

    def _record(self, rows: Sequence[tuple[object, int, int]]) -> None:
        seen_at = time.monotonic()
        with self._changed:
            woke = False
            for public_id, version, room_pk in rows:
                key = str(public_id)
                if self._versions.get(key, (None, 0.0))[0] != version:
                    self._versions[key] = (version, seen_at)
                    count = self._rooms.get(room_pk, (0, 0.0))[0]
                    self._rooms[room_pk] = (count + 1, seen_at)
                    woke = True
            self._versions = {
                k: v for k, v in self._versions.items() if seen_at - v[1] <= FORGET_AFTER_SECONDS
            }
            self._rooms = {
                k: v for k, v in self._rooms.items() if seen_at - v[1] <= FORGET_AFTER_SECONDS
            }
            if woke:
                self._changed.notify_all()


changes = ChangeWatcher()
