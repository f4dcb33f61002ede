"""May guests join a room's call, and who may change that (rooms.call_levels): the spec's
rules for ``m.room.power_levels`` applied to the call member event, without a homeserver."""

from __future__ import annotations

from matrix import CALL_MEMBER_EVENT, PowerLevels
from rooms.call_levels import (
    call_level,
    may_let_guests_join_call,
    power_levels_letting_guests_join,
)

BOT = "@guestgate:main.test"
ADMIN = "@admin:main.test"

# Synapse's private_chat preset, as the bot sees it: state at 50, permissions at 100.
SYNAPSE_ROOM = {
    "users": {ADMIN: 100, BOT: 50},
    "users_default": 0,
    "state_default": 50,
    "events_default": 0,
    "events": {"m.room.power_levels": 100, "m.room.name": 50},
}


def levels(**changes: object) -> PowerLevels:
    return PowerLevels.from_content({**SYNAPSE_ROOM, **changes})


def test_a_synapse_room_does_not_let_guests_join_and_changing_it_needs_100() -> None:
    call = call_level(levels())

    assert not call.guests_may_join
    assert (call.guest_level, call.needed, call.change_needs) == (0, 50, 100)
    assert may_let_guests_join_call(levels(), ADMIN)
    assert not may_let_guests_join_call(levels(), BOT)


def test_an_override_at_the_guests_level_lets_them_join() -> None:
    assert call_level(levels(events={CALL_MEMBER_EVENT: 0})).guests_may_join


def test_guests_at_a_higher_default_level_may_join_where_state_needs_no_more() -> None:
    assert call_level(levels(users_default=50)).guests_may_join


def test_an_override_above_the_bots_level_keeps_the_bot_out_even_if_it_may_change_permissions() -> (
    None
):
    room = levels(events={"m.room.power_levels": 50, CALL_MEMBER_EVENT: 75})

    assert call_level(room).change_needs == 75
    assert not may_let_guests_join_call(room, BOT)
    assert may_let_guests_join_call(room, ADMIN)


def test_a_room_without_power_levels_lets_everyone_send_state() -> None:
    assert call_level(PowerLevels.from_content(None, creator=ADMIN)).guests_may_join


def test_the_fix_sets_the_call_member_level_and_keeps_everything_else() -> None:
    fixed = power_levels_letting_guests_join(SYNAPSE_ROOM)

    assert fixed["events"] == {**SYNAPSE_ROOM["events"], CALL_MEMBER_EVENT: 0}  # type: ignore[dict-item]
    assert {key: value for key, value in fixed.items() if key != "events"} == {
        key: value for key, value in SYNAPSE_ROOM.items() if key != "events"
    }
    assert call_level(PowerLevels.from_content(fixed)).guests_may_join
