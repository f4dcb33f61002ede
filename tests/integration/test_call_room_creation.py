"""A call room in one step, and invite links shown again, against the real homeserver pair.

Personas: the moderator (``moderator``, a user of main, who creates the room), a guest (a real
HTTP client through GuestGate's web server). Each moderator request goes through GuestGate's
views (Django's test client); the room is made on main by GuestGate's bot for real.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from devtools.guestbrowser import GuestBrowser
from guestgate.crypto import token_hash
from matrix import CALL_MEMBER_EVENT, MatrixClient
from rooms.models import CallRoom, InviteLink
from tests.conftest import Person
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.homeservers


def signed_in_as(matrix_id: str) -> Client:
    client = Client()
    client.force_login(User.objects.get_or_create(username=matrix_id)[0])
    return client


def link_url(page: str) -> str:
    return page.split('id="invite-url" value="')[1].split('"')[0]


def create_room(client: Client, **data: str) -> Any:
    return client.post("/moderator/rooms/new", data, follow=True)


# -- A new call room in one step -----------------------------------------------------------------


def test_a_room_made_in_one_step_is_a_ready_call_room_on_main_with_its_link_shown(
    moderator: Person, main_bot: MatrixClient
) -> None:
    answer = create_room(signed_in_as(moderator.user_id), name="Board meeting", topic="Q4")

    assert answer.status_code == 200
    room = CallRoom.objects.get()
    assert room.status == CallRoom.Status.READY, room.problems
    assert room.name == "Board meeting" and room.registered_by == moderator.user_id
    info = main_bot.room_info(room.room_id)
    assert info.join_rule == "knock" and info.room_version == "12"
    assert (main_bot.state_event(room.room_id, "m.room.topic") or {})["topic"] == "Q4"
    levels = main_bot.power_levels(room.room_id)
    assert levels.events[CALL_MEMBER_EVENT] == 0 and levels.users_default == 0
    assert levels.level_of(moderator.user_id) == 100
    assert levels.invite == 50  # a guest let in invites no one
    invited = main_bot.member(room.room_id, moderator.user_id)
    assert invited is not None and invited.membership == "invite"
    page = answer.content.decode()
    link = InviteLink.objects.get(room=room)
    assert token_hash(link_url(page).rsplit("/j/", 1)[1]) == link.token_hash and "<svg" in page
    assert "Printable poster" in page


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "Give the room a name."),
        ("x" * 101, "at most 100 characters"),
        ("a\u202eb", "invisible"),
    ],
)
def test_a_bad_room_name_is_said_and_nothing_is_created(
    moderator: Person, name: str, said: str
) -> None:
    answer = create_room(signed_in_as(moderator.user_id), name=name)

    assert answer.status_code == 400 and said in answer.content.decode()
    assert not CallRoom.objects.exists() and not InviteLink.objects.exists()


def test_main_refusing_to_create_the_room_is_said_and_nothing_is_registered(
    moderator: Person, main_hs_proxy: FaultProxy, settings: Any
) -> None:
    settings.MAIN_HS_URL = main_hs_proxy.url
    main_hs_proxy.fail(
        "POST",
        r"/createRoom$",
        status=403,
        body={"errcode": "M_FORBIDDEN", "error": "You are not permitted to create rooms"},
    )

    answer = create_room(signed_in_as(moderator.user_id), name="Refused")

    assert answer.status_code == 502  # main's answer, as a gateway's
    assert "did not create the room" in answer.content.decode()
    assert not CallRoom.objects.exists() and not InviteLink.objects.exists()


def test_someone_not_among_the_room_creators_may_not_create_rooms(
    moderator: Person, settings: Any
) -> None:
    settings.ROOM_CREATORS = [":elsewhere.example"]

    answer = create_room(signed_in_as(moderator.user_id), name="Not mine")

    assert answer.status_code == 403 and "GUESTGATE_ROOM_CREATORS" in answer.content.decode()
    assert not CallRoom.objects.exists()


# -- Links shown again; revoked, and the revocation undone ---------------------------------------


def test_a_link_shown_again_has_the_same_address_and_its_token_is_not_stored_in_clear(
    call_room: CallRoom, moderator: Person
) -> None:
    mona = signed_in_as(moderator.user_id)
    made = mona.post(f"/moderator/rooms/{call_room.pk}/links", {"label": "Door"}, follow=True)
    link = InviteLink.objects.get(label="Door")

    again = mona.get(f"/moderator/links/{link.pk}")

    url = link_url(made.content.decode())
    assert link_url(again.content.decode()) == url
    assert again["Cache-Control"] == "no-store"
    token = url.rsplit("/", 1)[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token_hash, token_encrypted FROM rooms_invitelink WHERE id = %s", [link.pk]
        )
        stored = cursor.fetchone()
    assert token not in "".join(stored) and token.upper() not in "".join(stored)


@pytest.mark.usefixtures("celery_worker")
def test_a_revoked_link_refuses_guests_and_undoing_it_lets_the_same_link_work_again(
    call_room: CallRoom, moderator: Person, guest: GuestBrowser
) -> None:
    mona = signed_in_as(moderator.user_id)
    mona.post(f"/moderator/rooms/{call_room.pk}/links", {"label": "Poster"})
    link = InviteLink.objects.get(label="Poster")
    url = link_url(mona.get(f"/moderator/links/{link.pk}").content.decode())
    token = url.rsplit("/", 1)[1]

    asked = mona.get(f"/moderator/links/{link.pk}/revoke")
    assert asked.status_code == 200 and "Revoke the link" in asked.content.decode()
    assert guest.open_invite(token).status_code == 200  # asking to confirm revokes nothing

    listing = mona.post(f"/moderator/links/{link.pk}/revoke", follow=True).content.decode()
    assert "is revoked" in listing and "Undo" in listing
    refused = guest.open_invite(token)
    assert refused.status_code == 410 and "withdrawn" in refused.text

    mona.post(f"/moderator/links/{link.pk}/restore")

    assert guest.ask_to_join(token, "Ida").status_code == 302
    assert guest.wait_for("waiting")["status"] == "waiting"
    assert InviteLink.objects.get(pk=link.pk).use_count == 1
