"""A call room that encrypts: GuestGate records it from main's pushes, and only the lobby of
such a room lets the crypto's WebAssembly run (``'wasm-unsafe-eval'``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from matrix.appservice import RoomEvent
from ops.security import lobby_policy
from rooms.membership import appservice_transaction_receive
from rooms.models import CallRoom

MEGOLM = "m.megolm.v1.aes-sha2"


def script_sources(policy: str) -> list[str]:
    [directive] = [p.strip() for p in policy.split(";") if p.strip().startswith("script-src")]
    return directive.split()[1:]


def test_the_lobby_of_an_encrypted_room_may_compile_webassembly(settings: Any) -> None:
    settings.CALL_MODE = "embedded"

    assert script_sources(lobby_policy(encrypted=True)) == ["'self'", "'wasm-unsafe-eval'"]


def test_the_lobby_of_a_room_that_does_not_encrypt_runs_only_its_own_scripts(
    settings: Any,
) -> None:
    settings.CALL_MODE = "embedded"

    assert script_sources(lobby_policy(encrypted=False)) == ["'self'"]


def test_in_link_mode_no_lobby_runs_webassembly(settings: Any) -> None:
    settings.CALL_MODE = "link"

    assert "wasm-unsafe-eval" not in lobby_policy(encrypted=True)


def encryption_pushed(room: CallRoom, content: dict[str, Any]) -> None:
    event = RoomEvent(
        event_id=f"$enc{uuid.uuid4().hex}",
        room_id=room.room_id,
        type="m.room.encryption",
        sender="@mona:main",
        state_key="",
        content=content,
    )
    appservice_transaction_receive(txn_id=uuid.uuid4().hex, events=[event])


@pytest.mark.django_db
def test_main_pushing_encryption_marks_the_room_encrypted(room: CallRoom) -> None:
    assert not room.encrypted

    encryption_pushed(room, {"algorithm": MEGOLM})

    room.refresh_from_db()
    assert room.encrypted


@pytest.mark.django_db
def test_an_encryption_event_without_an_algorithm_changes_nothing(room: CallRoom) -> None:
    encryption_pushed(room, {})

    room.refresh_from_db()
    assert not room.encrypted


@pytest.mark.django_db
def test_encryption_once_on_stays_on_whatever_is_pushed_later(room: CallRoom) -> None:
    encryption_pushed(room, {"algorithm": MEGOLM})
    encryption_pushed(room, {})

    room.refresh_from_db()
    assert room.encrypted
