"""Long polls wake when a join request changes, in this process or another."""

from __future__ import annotations

import errno
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection, connections
from django.db.models import F
from django.utils import timezone

from rooms import dbsignal, live, transitions
from rooms.live import ChangeWatcher
from rooms.models import CallRoom, JoinRequest
from rooms.transitions import join_request_denied

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waiting() -> JoinRequest:
    room = CallRoom.objects.create(
        room_id="!Live", status="ready", registered_by="x", checked_at=timezone.now()
    )
    return JoinRequest.objects.create(
        public_id=uuid.uuid4(),
        room=room,
        user_id="@g:x",
        display_name="G",
        status=JoinRequest.Status.WAITING,
    )


@pytest.fixture(autouse=True)
def _watchers_stop(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every watcher a test made has ended (and closed its connections) before the next test:
    PostgreSQL cannot drop a test database someone is still connected to."""
    made: list[ChangeWatcher] = []
    real_init = ChangeWatcher.__init__

    def init(self: ChangeWatcher) -> None:
        real_init(self)
        made.append(self)

    monkeypatch.setattr(ChangeWatcher, "__init__", init)
    yield
    for watcher in made:
        watcher.join(timeout=10)


def in_thread(target: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_waiting_poll_wakes_when_its_request_changes(waiting: JoinRequest) -> None:
    watcher = ChangeWatcher()
    poll = in_thread(
        lambda: watcher.wait_for_request(str(waiting.public_id), waiting.version, timeout=600)
    )

    join_request_denied(waiting, decider=None, by=None, reason="")

    poll.join(timeout=30)
    assert not poll.is_alive(), "the long poll was not woken by the change"


def test_a_poll_is_not_woken_by_another_rooms_change(waiting: JoinRequest) -> None:
    other_room = CallRoom.objects.create(
        room_id="!Other", status="ready", registered_by="x", checked_at=timezone.now()
    )
    other = JoinRequest.objects.create(
        public_id=uuid.uuid4(),
        room=other_room,
        user_id="@h:x",
        display_name="H",
        status=JoinRequest.Status.WAITING,
    )
    watcher = ChangeWatcher()
    # A new watcher wakes everyone once for rows it has not seen yet (harmless: the page
    # asks again); let it see the existing rows first.
    watcher.wait_for_room(waiting.room_id, watcher.room_mark(waiting.room_id), timeout=0.5)
    mark = watcher.room_mark(waiting.room_id)
    poll = in_thread(lambda: watcher.wait_for_room(waiting.room_id, mark, timeout=600))

    join_request_denied(other, decider=None, by=None, reason="")
    poll.join(timeout=1)
    assert poll.is_alive()  # still waiting: the change was elsewhere

    join_request_denied(waiting, decider=None, by=None, reason="")
    poll.join(timeout=30)
    assert not poll.is_alive()


def test_a_change_committed_in_this_process_wakes_polls_without_waiting_for_a_tick(
    waiting: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "TICK_SECONDS", 600.0)  # only a poke can make it look again
    monkeypatch.setattr(live, "change_signal", lambda: None)  # as where it cannot hear commits
    watcher = ChangeWatcher()
    monkeypatch.setattr(transitions, "changes", watcher)  # the one every transition pokes
    # Let the watcher take its first look (it wakes everyone once for rows it has not seen).
    watcher.wait_for_room(waiting.room_id, watcher.room_mark(waiting.room_id), timeout=0.5)
    poll = in_thread(
        lambda: watcher.wait_for_request(str(waiting.public_id), waiting.version, timeout=600)
    )

    join_request_denied(waiting, decider=None, by=None, reason="")

    poll.join(timeout=30)
    assert not poll.is_alive(), "the poke after commit did not wake the long poll"


def test_another_connections_commit_wakes_polls_through_the_database_signal(
    waiting: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the write-ahead log's folder changes; PostgreSQL: the trigger's NOTIFY. No
    poke and no tick: an UPDATE from another thread's connection, as the worker's would be."""
    monkeypatch.setattr(live, "SIGNALLED_TICK_SECONDS", 600.0)
    monkeypatch.setattr(live, "TICK_SECONDS", 600.0)
    watcher = ChangeWatcher()
    watcher.wait_for_room(waiting.room_id, watcher.room_mark(waiting.room_id), timeout=0.5)
    poll = in_thread(
        lambda: watcher.wait_for_request(str(waiting.public_id), waiting.version, timeout=600)
    )
    poll.join(timeout=1)
    assert poll.is_alive()  # waiting: nothing changed yet

    bump = in_thread(
        lambda: JoinRequest.objects.filter(pk=waiting.pk).update(
            version=F("version") + 1, updated_at=timezone.now()
        )
    )
    bump.join(timeout=30)

    poll.join(timeout=30)
    assert not poll.is_alive(), "the other connection's commit did not wake the long poll"


def test_a_waiting_poll_holds_no_database_connection(waiting: JoinRequest) -> None:
    watcher = ChangeWatcher()
    seen: dict[str, object] = {}

    def poll() -> None:
        own = connections["default"]  # this thread's
        JoinRequest.objects.get(pk=waiting.pk)  # the view's own query opens it
        seen["before the wait"] = own.connection
        look = threading.Timer(0.3, lambda: seen.setdefault("while waiting", own.connection))
        look.start()
        watcher.wait_for_request(str(waiting.public_id), waiting.version, timeout=0.6)
        look.join()

    in_thread(poll).join(timeout=30)
    assert seen["before the wait"] is not None
    assert seen["while waiting"] is None  # closed (a pool takes it back) until the next query


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_write_in_the_sqlite_databases_folder_wakes_the_signal(tmp_path: Path) -> None:
    signal = dbsignal._FolderWrites(str(tmp_path))
    try:
        assert not signal.wait(0)
        (tmp_path / "db.sqlite3-wal").write_bytes(b"page")  # as a commit writes the log
        assert signal.wait(5)
        assert not signal.wait(0)  # heard once: quiet again until the next write
    finally:
        signal.close()


def test_without_an_inotify_watch_the_watcher_polls_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []

    class NoWatchesLeft:
        def add_watch(self, path: str, mask: int) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            closed.append(True)

    sqlite = SimpleNamespace(vendor="sqlite", settings_dict={"NAME": str(tmp_path / "db")})
    monkeypatch.setattr(dbsignal, "connection", sqlite)
    monkeypatch.setattr(dbsignal, "INotify", NoWatchesLeft, raising=False)

    assert dbsignal.change_signal() is None  # so ChangeWatcher looks every TICK_SECONDS
    assert closed == [True]
