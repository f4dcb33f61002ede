"""What the bot does for a moderator, against the real main homeserver: only what the room's
power levels let that moderator do themselves, and nothing left behind when it refuses.

Personas: the room's creator (``moderator``), a doorkeeper whose power in a room is enough to
let guests in and no more, and an outsider with no power at all (both ``member``). Each
request goes through GuestGate's views (Django's test client); every action of the bot is a
real call to the main homeserver.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from devtools.localpair import LocalPair
from matrix import CALL_MEMBER_EVENT, MatrixClient
from rooms.call_rooms import call_room_register
from rooms.models import CallRoom
from tests.conftest import Person

pytestmark = pytest.mark.homeservers

YOUR_POWER_DOES_NOT_ALLOW = "Your power level in this room does not allow that."


# -- The bot acts for a moderator only with the power the change itself needs -----------------


def signed_in_as(matrix_id: str) -> Client:
    client = Client()
    client.force_login(User.objects.get_or_create(username=matrix_id)[0])
    return client


@pytest.fixture
def bot_id(homeserver_pair: LocalPair) -> str:
    return f"@{homeserver_pair.bot_localpart}:{homeserver_pair.main.server_name}"


@pytest.fixture
def invite_only_room(
    homeserver_pair: LocalPair,
    moderator: Person,
    member: Person,
    main_bot: MatrixClient,
    bot_id: str,
) -> CallRoom:
    """A registered room whose join rule is "invite", which the bot (PL 50) may change and its
    doorkeeper (``member``, PL 10: enough to invite, not to change the join rule) may not."""
    room_id = moderator.client.create_room(
        name="Door call",
        join_rule="invite",
        invite=[bot_id],
        power_level_users={bot_id: 50, member.user_id: 10},
        power_level_events={CALL_MEMBER_EVENT: 0},  # guests may join the call
    )
    main_bot.join(room_id, via=[homeserver_pair.main.server_name])
    room = call_room_register(room=room_id, registered_by=moderator.user_id)
    assert room.levels.may_invite(member.user_id)
    assert not room.levels.may_send_state(member.user_id, "m.room.join_rules")
    return room


def test_a_doorkeeper_cannot_have_the_bot_change_the_join_rule(
    invite_only_room: CallRoom, member: Person, main_bot: MatrixClient
) -> None:
    answer = signed_in_as(member.user_id).post(
        f"/moderator/rooms/{invite_only_room.pk}/check", {"fix": "join_rule"}, follow=True
    )

    assert YOUR_POWER_DOES_NOT_ALLOW in answer.content.decode()
    assert main_bot.room_info(invite_only_room.room_id).join_rule == "invite"


def test_a_moderator_who_may_change_the_join_rule_has_the_bot_set_knock(
    invite_only_room: CallRoom, moderator: Person, main_bot: MatrixClient
) -> None:
    answer = signed_in_as(moderator.user_id).post(
        f"/moderator/rooms/{invite_only_room.pk}/check", {"fix": "join_rule"}
    )

    assert answer.status_code == 302
    assert main_bot.room_info(invite_only_room.room_id).join_rule == "knock"
    invite_only_room.refresh_from_db()
    assert invite_only_room.status == CallRoom.Status.READY


def test_a_doorkeeper_may_still_have_the_room_checked_again(
    invite_only_room: CallRoom, member: Person
) -> None:
    answer = signed_in_as(member.user_id).post(
        f"/moderator/rooms/{invite_only_room.pk}/check", follow=True
    )

    assert answer.status_code == 200
    assert YOUR_POWER_DOES_NOT_ALLOW not in answer.content.decode()


# -- A refused registration ----------------------------------------------------------------------


def test_a_refused_registration_leaves_the_bot_out_of_the_room(
    moderator: Person, member: Person, bot_id: str
) -> None:
    room_id = moderator.client.create_room(name="Not theirs", join_rule="knock", invite=[bot_id])

    answer = signed_in_as(member.user_id).post("/moderator/rooms", {"room": room_id}, follow=True)

    assert "You need to be a moderator of that room" in answer.content.decode()
    assert not CallRoom.objects.filter(room_id=room_id).exists()
    bot = moderator.client.member(room_id, bot_id)
    assert bot is not None and bot.membership == "leave"


def test_a_refused_registration_of_a_registered_room_keeps_the_bot_there(
    call_room: CallRoom, member: Person, moderator: Person, bot_id: str
) -> None:
    answer = signed_in_as(member.user_id).post(
        "/moderator/rooms", {"room": call_room.room_id}, follow=True
    )

    assert "You need to be a moderator of that room" in answer.content.decode()
    assert CallRoom.objects.filter(pk=call_room.pk).exists()
    bot = moderator.client.member(call_room.room_id, bot_id)
    assert bot is not None and bot.membership == "join"
