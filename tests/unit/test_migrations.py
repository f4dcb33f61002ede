"""Migrations that change what rows hold: stored English sentences become codes."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone, translation

from rooms.messages import guest_sentence
from rooms.selectors import call_room_problems

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("rooms", "0002_join_request_change_notify")]
AFTER = [("rooms", "0003_join_request_reason_code")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest_migrations():
    """The other tests expect every migration applied."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_sentences_stored_by_earlier_versions_become_codes_shown_in_the_readers_language():
    old = migrate(BEFORE)
    room = old.get_model("rooms", "CallRoom").objects.create(
        room_id="!old:main",
        status="problem",
        registered_by="@mona:main",
        checked_at=timezone.now(),
        problems=[
            "GuestGate's bot @guestgate:main may not invite: give it power level 50 or more.",
            "Something a moderator's tool wrote.",
        ],
    )
    requests = old.get_model("rooms", "JoinRequest").objects

    def request(user: str, status: str, reason: str, decided_by: str = "") -> int:
        return requests.create(
            public_id=uuid.uuid4(),
            room_id=room.pk,
            user_id=user,
            display_name=user,
            status=status,
            reason=reason,
            decided_by=decided_by,
        ).pk

    failed = request(
        "@a:g", "failed", "Something went wrong on the server (matrix.forbidden). Please try again."
    )
    banned_before = request("@b:g", "banned", "You cannot join this call.")
    moderator_words = request("@c:g", "denied", "You cannot join this call.", "@mona:main")

    new = migrate(AFTER)
    rows = new.get_model("rooms", "JoinRequest").objects
    assert rows.filter(pk=failed).values_list("reason_code", "reason").get() == (
        "server_failed",
        "matrix.forbidden",
    )
    assert rows.filter(pk=banned_before).values_list("reason_code", "reason").get() == (
        "banned_before",
        "",
    )
    assert rows.filter(pk=moderator_words).values_list("reason_code", "reason").get() == (
        "",
        "You cannot join this call.",
    )
    with translation.override("de"):
        assert "(matrix.forbidden)" in guest_sentence("server_failed", "matrix.forbidden")
        assert guest_sentence("server_failed", "x").startswith("Auf dem Server")
    migrated_room = new.get_model("rooms", "CallRoom").objects.get(pk=room.pk)
    assert migrated_room.problems == [
        {"code": "bot_may_not_invite", "values": {"bot_id": "@guestgate:main", "level": "50"}},
        "Something a moderator's tool wrote.",
    ]
    with translation.override("de"):
        german = call_room_problems(migrated_room)
    assert "@guestgate:main" in german[0] and "50" in german[0]
    assert german[0] != room.problems[0]
    assert german[1] == "Something a moderator's tool wrote."


def test_the_codes_become_sentences_again_when_the_migration_is_reversed():
    new = migrate(AFTER)
    room = new.get_model("rooms", "CallRoom").objects.create(
        room_id="!new:main",
        status="problem",
        registered_by="@mona:main",
        checked_at=timezone.now(),
        problems=[{"code": "not_knock_rule", "values": {"join_rule": "invite"}}],
    )
    new.get_model("rooms", "JoinRequest").objects.create(
        public_id=uuid.uuid4(),
        room_id=room.pk,
        user_id="@a:g",
        display_name="A",
        status="failed",
        reason="",
        reason_code="server_unavailable",
    )

    old = migrate(BEFORE)
    assert (
        old.get_model("rooms", "JoinRequest")
        .objects.get()
        .reason.startswith("The server is not answering")
    )
    assert old.get_model("rooms", "CallRoom").objects.get().problems == [
        "The room's join rule is “invite”. Guests can only ask to join a room "
        "set to “Ask to join” (join rule knock)."
    ]
