"""Call rooms that let guests into the call, against the real homeserver pair.

A guest joins the call by sending ``org.matrix.msc3401.call.member`` to the room on main,
through the guest homeserver; Synapse refuses it when the room's power levels ask more than a
guest's level (CALL-LAB §6). GuestGate reports that as a room problem, and has its bot fix it
for a moderator when the bot's power (and the moderator's) allows the change.

Personas: the room's creator (``moderator``, who outranks everyone in room version 12), a
doorkeeper (``member`` at level 10: may let guests in, not change permissions), and a guest
on the guest homeserver.
"""

from __future__ import annotations

import json
import ssl
from io import StringIO

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils.html import escape

from devtools.localpair import LocalPair
from devtools.localpair.config import authority_files
from matrix import CALL_MEMBER_EVENT, Forbidden, MatrixClient
from ops import doctor
from rooms import messages
from rooms.call_rooms import call_room_register
from rooms.models import CallRoom
from tests.conftest import Person, unique_localpart
from tests.waiting import wait_for

pytestmark = pytest.mark.homeservers

BOT_MAY_NOT = "GuestGate's bot may not change the room's permissions"


def signed_in_as(matrix_id: str) -> Client:
    client = Client()
    client.force_login(User.objects.get_or_create(username=matrix_id)[0])
    return client


def problem_codes(room: CallRoom) -> list[str]:
    return [str(problem["code"]) for problem in room.problems]


@pytest.fixture
def bot_id(homeserver_pair: LocalPair) -> str:
    return f"@{homeserver_pair.bot_localpart}:{homeserver_pair.main.server_name}"


def room_without_call_level(
    pair: LocalPair, moderator: Person, member: Person, main_bot: MatrixClient, bot_level: int
) -> str:
    """A knock room as Synapse makes it (``state_default: 50``, ``m.room.power_levels`` at
    100) with no level for the call member event, the bot at `bot_level`, the doorkeeper at 10."""
    bot_id = f"@{pair.bot_localpart}:{pair.main.server_name}"
    room_id = moderator.client.create_room(
        name="Plain call",
        join_rule="knock",
        invite=[bot_id],
        power_level_users={bot_id: bot_level, member.user_id: 10},
    )
    main_bot.join(room_id, via=[pair.main.server_name])
    levels = main_bot.power_levels(room_id)
    assert levels.state_default == 50 and CALL_MEMBER_EVENT not in levels.events
    assert levels.events.get("m.room.power_levels") == 100
    return room_id


@pytest.fixture
def room_the_bot_may_fix(
    homeserver_pair: LocalPair, moderator: Person, member: Person, main_bot: MatrixClient
) -> CallRoom:
    room_id = room_without_call_level(homeserver_pair, moderator, member, main_bot, 100)
    return call_room_register(room=room_id, registered_by=moderator.user_id)


@pytest.fixture
def room_the_bot_may_not_fix(
    homeserver_pair: LocalPair, moderator: Person, member: Person, main_bot: MatrixClient
) -> CallRoom:
    room_id = room_without_call_level(homeserver_pair, moderator, member, main_bot, 50)
    return call_room_register(room=room_id, registered_by=moderator.user_id)


def joined_guest(
    pair: LocalPair, guest_appservice: MatrixClient, main_bot: MatrixClient, room_id: str
) -> MatrixClient:
    """A guest on the guest homeserver, let into the room, acting with its own session."""
    guest_id = guest_appservice.register_appservice_user(unique_localpart(pair.guest_user_prefix))
    session = guest_appservice.login_appservice_user(guest_id)
    guest = guest_appservice.with_token(session.access_token)
    guest.knock(room_id, via=[pair.main.server_name])
    main_bot.ensure_invited(room_id, guest_id)
    guest.ensure_joined(room_id, via=[pair.main.server_name])
    return guest


def send_call_membership(guest: MatrixClient, room_id: str) -> str:
    """What Element Call sends for the guest's device when it joins (CALL-LAB §4)."""
    who = guest.whoami()
    return guest.set_state(
        room_id,
        CALL_MEMBER_EVENT,
        {
            "application": "m.call",
            "call_id": "",
            "scope": "m.room",
            "device_id": who.device_id,
            "expires": 14_400_000,
            "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
            "foci_preferred": [],
        },
        state_key=f"_{who.user_id}_{who.device_id}_m.call",
    )


# -- The check -----------------------------------------------------------------------------


def test_a_room_where_guests_may_not_send_their_call_membership_is_registered_with_the_problem(
    room_the_bot_may_fix: CallRoom,
) -> None:
    assert room_the_bot_may_fix.status == CallRoom.Status.PROBLEM
    assert problem_codes(room_the_bot_may_fix) == [messages.GUESTS_MAY_NOT_JOIN_CALL]
    assert room_the_bot_may_fix.problems[0]["values"] == {
        "event": CALL_MEMBER_EVENT,
        "level": 50,
        "guest_level": 0,
    }


def test_the_call_room_fixture_lets_guests_join_the_call(call_room: CallRoom) -> None:
    assert call_room.status == CallRoom.Status.READY
    assert problem_codes(call_room) == []


def test_synapse_refuses_a_guests_call_membership_where_the_problem_is_reported(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    room_the_bot_may_fix: CallRoom,
) -> None:
    guest = joined_guest(homeserver_pair, guest_appservice, main_bot, room_the_bot_may_fix.room_id)

    with pytest.raises(Forbidden):
        send_call_membership(guest, room_the_bot_may_fix.room_id)


# -- The fix, by the bot, for a moderator who may make it ------------------------------------


def test_the_bot_lets_guests_join_the_call_for_a_moderator_and_a_guest_then_can(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    moderator: Person,
    room_the_bot_may_fix: CallRoom,
) -> None:
    room_id = room_the_bot_may_fix.room_id
    page = signed_in_as(moderator.user_id).get(f"/moderator/rooms/{room_the_bot_may_fix.pk}")
    assert 'value="call_level"' in page.content.decode()

    answer = signed_in_as(moderator.user_id).post(
        f"/moderator/rooms/{room_the_bot_may_fix.pk}/check", {"fix": "call_level"}
    )

    assert answer.status_code == 302
    room_the_bot_may_fix.refresh_from_db()
    assert room_the_bot_may_fix.status == CallRoom.Status.READY, room_the_bot_may_fix.problems
    levels = main_bot.power_levels(room_id)
    assert levels.events[CALL_MEMBER_EVENT] == 0
    assert levels.state_default == 50  # nothing else changed
    assert levels.users[f"@{homeserver_pair.bot_localpart}:{homeserver_pair.main.server_name}"]
    guest = joined_guest(homeserver_pair, guest_appservice, main_bot, room_id)
    event_id = send_call_membership(guest, room_id)
    assert event_id.startswith("$")
    who = guest.whoami()
    sent = wait_for(
        lambda: main_bot.state_event(
            room_id, CALL_MEMBER_EVENT, f"_{who.user_id}_{who.device_id}_m.call"
        ),
        what="the guest's call membership on main",
    )
    assert sent["device_id"] == who.device_id


def test_a_doorkeeper_cannot_have_the_bot_change_the_rooms_permissions(
    main_bot: MatrixClient, member: Person, room_the_bot_may_fix: CallRoom
) -> None:
    page = signed_in_as(member.user_id).get(f"/moderator/rooms/{room_the_bot_may_fix.pk}")
    assert 'value="call_level"' not in page.content.decode()

    answer = signed_in_as(member.user_id).post(
        f"/moderator/rooms/{room_the_bot_may_fix.pk}/check", {"fix": "call_level"}, follow=True
    )

    assert "Your power level in this room does not allow that." in answer.content.decode()
    assert CALL_MEMBER_EVENT not in main_bot.power_levels(room_the_bot_may_fix.room_id).events


# -- Where the bot may not: the room's admin is told what to change --------------------------


def test_a_bot_at_50_cannot_fix_a_room_whose_permissions_need_100_and_the_admin_is_told_how(
    moderator: Person, main_bot: MatrixClient, bot_id: str, room_the_bot_may_not_fix: CallRoom
) -> None:
    room = room_the_bot_may_not_fix
    assert problem_codes(room) == [messages.GUESTS_MAY_NOT_JOIN_CALL_ADMIN]
    page = signed_in_as(moderator.user_id).get(f"/moderator/rooms/{room.pk}").content.decode()
    assert 'value="call_level"' not in page
    assert f"GuestGate&#x27;s bot {bot_id} (power level 50) may not change that: it needs 100" in (
        page
    )
    assert "Room settings → Roles &amp; permissions → “Join Element Call calls” → Default" in page
    assert f"add &quot;{CALL_MEMBER_EVENT}&quot;: 0 to &quot;events&quot;" in page

    answer = signed_in_as(moderator.user_id).post(
        f"/moderator/rooms/{room.pk}/check", {"fix": "call_level"}, follow=True
    )

    assert escape(BOT_MAY_NOT) in answer.content.decode()
    assert CALL_MEMBER_EVENT not in main_bot.power_levels(room.room_id).events
    room.refresh_from_db()
    assert room.status == CallRoom.Status.PROBLEM


def test_once_an_admin_has_changed_it_checking_again_makes_the_room_ready(
    moderator: Person, room_the_bot_may_not_fix: CallRoom
) -> None:
    room_id = room_the_bot_may_not_fix.room_id
    content = moderator.client.state_event(room_id, "m.room.power_levels") or {}
    content["events"] = {**content.get("events", {}), CALL_MEMBER_EVENT: 0}
    moderator.client.set_state(room_id, "m.room.power_levels", content)

    signed_in_as(moderator.user_id).post(f"/moderator/rooms/{room_the_bot_may_not_fix.pk}/check")

    room_the_bot_may_not_fix.refresh_from_db()
    assert room_the_bot_may_not_fix.status == CallRoom.Status.READY


@pytest.mark.usefixtures("celery_worker")
def test_an_admins_change_in_a_matrix_client_makes_the_room_ready_without_checking_again(
    moderator: Person, room_the_bot_may_not_fix: CallRoom
) -> None:
    """Main pushes the new power levels; GuestGate checks the room again by itself."""
    room = room_the_bot_may_not_fix
    assert room.status == CallRoom.Status.PROBLEM
    content = moderator.client.state_event(room.room_id, "m.room.power_levels") or {}
    content["events"] = {**content.get("events", {}), CALL_MEMBER_EVENT: 0}
    moderator.client.set_state(room.room_id, "m.room.power_levels", content)

    def ready() -> bool:
        room.refresh_from_db()
        return room.status == CallRoom.Status.READY

    wait_for(ready, what="the room to be checked again after main's push", timeout=30)
    assert problem_codes(room) == []


# -- OpenID: what a LiveKit JWT service checks a guest with --------------------------------


def test_the_guest_appservice_gets_an_openid_token_the_guest_homeserver_vouches_for(
    homeserver_pair: LocalPair, guest_appservice: MatrixClient, guest_user_id: str
) -> None:
    token = guest_appservice.as_user(guest_user_id).openid_token(guest_user_id)

    assert token.matrix_server_name == homeserver_pair.guest.server_name
    assert token.expires_in > 0 and token.token_type == "Bearer"
    assert token.access_token not in repr(token)
    # What a JWT service does with it: ask the guest homeserver over federation (TLS).
    answer = httpx.get(
        f"https://{homeserver_pair.guest.server_name}/_matrix/federation/v1/openid/userinfo",
        params={"access_token": token.access_token},
        verify=ssl.create_default_context(cafile=authority_files(homeserver_pair).certificate),
    )
    assert answer.status_code == 200
    assert answer.json() == {"sub": guest_user_id}


# -- The demo room of ``make run`` ---------------------------------------------------------


def demo_room(pair: LocalPair) -> tuple[str, MatrixClient]:
    """Run seed_demo; the demo room's id and a client of its moderator."""
    call_command("seed_demo", stdout=StringIO())
    demo = json.loads((pair.directory / "demo.json").read_text())
    with MatrixClient(base_url=pair.main.client_url, access_token=None) as anonymous:
        session = anonymous.password_login("moderator", demo["moderator_password"])
    return demo["room_id"], MatrixClient(
        base_url=pair.main.client_url, access_token=session.access_token
    )


def test_the_demo_room_is_a_current_knock_room_that_lets_guests_join_the_call(
    homeserver_pair: LocalPair, main_bot: MatrixClient
) -> None:
    room_id, moderator = demo_room(homeserver_pair)

    with moderator:
        info = main_bot.room_info(room_id)
        assert info.room_version == "12"
        assert info.join_rule == "knock"
        assert main_bot.power_levels(room_id).events[CALL_MEMBER_EVENT] == 0
        assert CallRoom.objects.get(room_id=room_id).status == CallRoom.Status.READY
        moderator.logout()


def test_a_demo_room_made_before_calls_is_mended_by_its_moderator(
    homeserver_pair: LocalPair, main_bot: MatrixClient
) -> None:
    room_id, moderator = demo_room(homeserver_pair)
    with moderator:
        content = moderator.state_event(room_id, "m.room.power_levels") or {}
        content["events"].pop(CALL_MEMBER_EVENT)
        moderator.set_state(room_id, "m.room.power_levels", content)
        moderator.logout()

    again, moderator = demo_room(homeserver_pair)

    with moderator:
        assert again == room_id
        assert main_bot.power_levels(room_id).events[CALL_MEMBER_EVENT] == 0
        moderator.logout()


# -- The doctor and a JWT service that checks OpenID tokens for real -------------------------


def test_the_doctor_gets_a_livekit_jwt_for_the_guest_servers_openid_token(
    homeserver_pair: LocalPair,
) -> None:
    """Against the pair's dev focus (devtools.rtcfocus), which checks the token with the
    guest homeserver over federation for real."""
    assert [
        {"type": "livekit", "livekit_service_url": homeserver_pair.rtc_focus_url}
    ] == settings.RTC_TRANSPORTS

    outcome = doctor.check_call_focus()

    assert outcome.ok is True, outcome


def test_the_doctor_says_when_the_jwt_service_refuses_the_guest_servers_tokens(
    homeserver_pair: LocalPair, focus_of_another_server: str
) -> None:
    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert "refused the guest homeserver's OpenID token (401 M_UNAUTHORIZED" in outcome.message
    assert homeserver_pair.guest.server_name in outcome.fix_hint
