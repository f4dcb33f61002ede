"""Waking long polls when a join request changes, at the cost of one query per tick per
process, however many guests and moderators are waiting.

One watcher thread per process (started when the first poll waits, stopped when none is
left) asks the database which join requests changed since its last look, and wakes the
polls waiting on them or on their room. Works across processes (the worker's changes are
seen too) with nothing but the database; a change committed in this process (a push from the
main homeserver, a moderator's click) makes it look at once (``poke``).

A waiting poll holds a thread but no database connection: 500 waiting guests must not hold
500 PostgreSQL connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from rooms.models import JoinRequest

#: How often the watcher looks for other processes' changes while someone waits: 5 ms of delay
#: on average, for one precompiled indexed query each time (about 1 % of a core).
TICK_SECONDS = 0.01
# Rows are read again for this long after they changed: a transaction that commits a little
# after its updated_at was set is still seen.
OVERLAP = timedelta(seconds=2)
FORGET_AFTER_SECONDS = 120.0


class ChangeWatcher:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._poked = threading.Event()
        self._pruned_at = 0.0
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

    def poke(self) -> None:
        """Look for changes now, not at the next tick (a change was committed here)."""
        self._poked.set()

    def poke_after_commit(self) -> None:
        transaction.on_commit(self.poke)

    def _wait(self, changed: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not connection.in_atomic_block:
            connection.close()  # reopened by the next query after the wait
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
        changed_since = _ChangedSince()
        try:
            while True:
                with self._changed:
                    if self._waiting == 0:
                        self._thread = None
                        return
                now = timezone.now()
                self._poked.clear()
                rows = changed_since(since - OVERLAP)
                since = now
                self._record(rows)
                self._poked.wait(TICK_SECONDS)
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
            if seen_at - self._pruned_at > 1.0:
                self._pruned_at = seen_at
                self._versions = {
                    k: v
                    for k, v in self._versions.items()
                    if seen_at - v[1] <= FORGET_AFTER_SECONDS
                }
                self._rooms = {
                    k: v for k, v in self._rooms.items() if seen_at - v[1] <= FORGET_AFTER_SECONDS
                }
            if woke:
                self._changed.notify_all()


class _ChangedSince:
    """The (public id, version, room) of join requests changed since a time: the ORM builds
    the SQL once, each tick only runs it (the ORM's own work was most of a tick's cost)."""

    def __init__(self) -> None:
        query = JoinRequest.objects.filter(updated_at__gte=timezone.now()).values_list(
            "public_id", "version", "room_id"
        )
        self._sql, _ = query.query.sql_with_params()
        self._updated_at = JoinRequest._meta.get_field("updated_at")
        self._public_id = JoinRequest._meta.get_field("public_id")

    def __call__(self, since: object) -> list[tuple[object, int, int]]:
        value = self._updated_at.get_db_prep_value(since, connection, prepared=False)
        with connection.cursor() as cursor:
            cursor.execute(self._sql, [value])
            return [
                (str(self._public_id.to_python(public_id)), version, room)
                for public_id, version, room in cursor
            ]


changes = ChangeWatcher()
