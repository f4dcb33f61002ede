"""Waking long polls when a join request changes, at the cost of one query per change per
process, however many guests and moderators are waiting.

One watcher thread per process (started when the first poll waits, stopped when none is
left) asks the database which join requests changed since its last look, and wakes the
polls waiting on them or on their room. It looks when the database says something was
committed (rooms/dbsignal.py: SQLite's log written, PostgreSQL's NOTIFY), by any process;
where it cannot hear that, every ``TICK_SECONDS``, and at once after a change committed in
this process (``poke``).

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

from rooms.dbsignal import ChangeSignal, change_signal
from rooms.models import JoinRequest

#: How often the watcher looks while someone waits, when it cannot hear of commits: one
#: indexed query a tick, however many wait (the lobby benchmark prints what it costs).
TICK_SECONDS = 0.01
#: When it hears of commits: it looks anyway this often (a safety net), and at most this often
#: (a busy database would otherwise have it look after every commit).
SIGNALLED_TICK_SECONDS = 1.0
MIN_LOOK_SECONDS = 0.005
EXIT_CHECK_SECONDS = 0.25
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

    def join(self, timeout: float) -> None:
        """Wait for the watcher thread to end (none waits any more): its connections closed."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

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
                if self._waiting == 0:
                    self._poked.set()  # the watcher ends now, not after its tick

    def _run(self) -> None:
        since = timezone.now() - OVERLAP
        changed_since = _ChangedSince()
        signal = change_signal()
        try:
            while True:
                with self._changed:
                    if self._waiting == 0:
                        self._thread = None
                        return
                now = timezone.now()
                self._poked.clear()
                looked = time.monotonic()
                rows = changed_since(since - OVERLAP)
                since = now
                self._record(rows)
                if signal is None:
                    self._poked.wait(TICK_SECONDS)
                else:
                    self._wait_for_signal(signal)
                    time.sleep(max(0.0, looked + MIN_LOOK_SECONDS - time.monotonic()))
        finally:
            if signal is not None:
                signal.close()
            connection.close()
            close_old_connections()

    def _wait_for_signal(self, signal: ChangeSignal) -> None:
        """Until the database says something changed, or the safety tick; in short slices, so
        the thread ends (and closes its connections) soon after the last poll left."""
        deadline = time.monotonic() + SIGNALLED_TICK_SECONDS
        while (left := deadline - time.monotonic()) > 0 and self._waiting > 0:
            if signal.wait(min(left, EXIT_CHECK_SECONDS)):
                return

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
