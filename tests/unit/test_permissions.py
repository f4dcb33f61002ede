"""Who may do what in a call room: the permission matrix, through the rights and the pages.

Refusals happen before any homeserver call, so no homeserver is needed here.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from rooms.models import CallRoom, JoinRequest
from rooms.permissions import ALL, NONE, RoomRights, room_rights
from tests.unit.conftest import MakeRoom

pytestmark = pytest.mark.django_db

OWNER = "@olga:main.test"  # the room's creator (room version 12: above every level)
MODERATOR = "@mona:main.test"  # power 50
DOORKEEPER = "@dora:main.test"  # power 10: may invite, not kick or ban
OUTSIDER = "@otto:main.test"  # no power level in the room


@pytest.fixture
def room(make_room: MakeRoom) -> CallRoom:
    return make_room(
        registered_by=OWNER,
        creators=[OWNER],
        power_levels={
            "invite": 10,
            "kick": 50,
            "ban": 60,
            "events": {"m.room.power_levels": 100},  # as Synapse sets it
            "users": {MODERATOR: 50, DOORKEEPER: 10, "@guestgate:main.test": 50},
        },
    )


@pytest.fixture
def waiting(room: CallRoom) -> JoinRequest:
    return JoinRequest.objects.create(
        public_id="00000000-0000-4000-8000-000000000001",
        room=room,
        user_id="@guest_x:guest.test",
        display_name="Alice (Guest)",
        status=JoinRequest.Status.WAITING,
    )


def signed_in(matrix_id: str, *, superuser: bool = False) -> Client:
    client = Client()
    user = User.objects.create(username=matrix_id, is_superuser=superuser, is_staff=superuser)
    client.force_login(user, backend="rooms.moderators.MatrixModeratorBackend")
    return client


@pytest.mark.parametrize(
    ("who", "rights"),
    [
        (OWNER, ALL),
        (
            MODERATOR,
            RoomRights(
                approve=True, deny=True, ban=False, set_join_rule=True, let_guests_join_call=False
            ),
        ),
        (DOORKEEPER, RoomRights(approve=True, deny=False, ban=False, set_join_rule=False)),
        (OUTSIDER, NONE),
    ],
    ids=["creator", "moderator", "doorkeeper", "outsider"],
)
def test_rights_follow_the_rooms_power_levels(room: CallRoom, who: str, rights: RoomRights) -> None:
    assert room_rights(room, User(username=who)) == rights


def test_an_admin_may_do_everything_everywhere(room: CallRoom) -> None:
    assert room_rights(room, User(username="admin", is_superuser=True)) == ALL


def test_a_default_power_level_is_not_enough_to_moderate(room: CallRoom) -> None:
    room.power_levels = {**room.power_levels, "users_default": 10}

    assert room_rights(room, User(username=OUTSIDER)) == NONE


def test_an_outsider_sees_neither_the_room_nor_its_queue(room: CallRoom) -> None:
    client = signed_in(OUTSIDER)

    assert "Team call" not in client.get("/moderator/").content.decode()
    assert client.get(f"/moderator/rooms/{room.pk}").status_code == 404
    assert client.get(f"/moderator/rooms/{room.pk}/queue").status_code == 404
    assert client.get(f"/moderator/rooms/{room.pk}/audit").status_code == 404


@pytest.mark.parametrize("action", ["approve", "deny", "ban"])
def test_an_outsider_cannot_decide(room: CallRoom, waiting: JoinRequest, action: str) -> None:
    answer = signed_in(OUTSIDER).post(f"/moderator/requests/{waiting.pk}/{action}")

    assert answer.status_code == 404
    waiting.refresh_from_db()
    assert (waiting.status, waiting.decided_by) == ("waiting", "")


@pytest.mark.parametrize(
    ("who", "action"), [(DOORKEEPER, "deny"), (DOORKEEPER, "ban"), (MODERATOR, "ban")]
)
def test_too_little_power_is_refused_with_a_message(
    room: CallRoom, waiting: JoinRequest, who: str, action: str
) -> None:
    client = signed_in(who)

    answer = client.post(f"/moderator/requests/{waiting.pk}/{action}", follow=True)

    assert "Your power level in this room does not allow that." in answer.content.decode()
    waiting.refresh_from_db()
    assert (waiting.status, waiting.decided_by) == ("waiting", "")


def test_a_doorkeeper_sees_only_the_buttons_their_power_allows(
    room: CallRoom, waiting: JoinRequest
) -> None:
    page = signed_in(DOORKEEPER).get(f"/moderator/rooms/{room.pk}").content.decode()

    assert "Let in Alice (Guest)" in page
    assert "Deny Alice (Guest)" not in page
    assert "Deny and ban" not in page


def test_a_moderator_sees_their_room_with_the_waiting_count(
    room: CallRoom, waiting: JoinRequest
) -> None:
    page = signed_in(MODERATOR).get("/moderator/").content.decode()

    assert "Team call" in page
    assert "1 waiting" in page


def test_the_dashboard_needs_a_sign_in() -> None:
    answer = Client().get("/moderator/")

    assert answer.status_code == 302
    assert answer["Location"].startswith("/moderator/sign-in")


def test_a_decision_needs_the_csrf_token(room: CallRoom, waiting: JoinRequest) -> None:
    client = signed_in(MODERATOR)
    client.handler.enforce_csrf_checks = True

    assert client.post(f"/moderator/requests/{waiting.pk}/approve").status_code == 403


def test_sign_in_is_throttled_per_address_before_the_homeserver_is_asked(
    client: Client, settings: object
) -> None:
    from rooms.moderators import SignInRefused, moderator_sign_in

    settings.SIGNIN_RATE_PER_IP = 0  # type: ignore[attr-defined]

    with pytest.raises(SignInRefused) as refused:
        moderator_sign_in(matrix_id="@mona:main.test", password="x", ip="203.0.113.9")
    assert refused.value.code == "signin.throttled"
    assert "Too many sign-in attempts" in refused.value.message


def test_only_who_may_change_the_join_rule_is_offered_the_bots_fix(make_room: MakeRoom) -> None:
    room = make_room(
        room_id="!NotKnock",
        status=CallRoom.Status.PROBLEM,
        problems=[{"code": "not_knock_rule", "values": {"join_rule": "invite"}}],
        power_levels={"invite": 10, "users": {MODERATOR: 50, DOORKEEPER: 10}},
    )
    fix = "Set “Ask to join”"

    assert fix in signed_in(MODERATOR).get(f"/moderator/rooms/{room.pk}").content.decode()
    assert fix not in signed_in(DOORKEEPER).get(f"/moderator/rooms/{room.pk}").content.decode()


def test_a_doorkeeper_is_refused_the_join_rule_fix_before_the_bot_is_asked(
    room: CallRoom,
) -> None:
    answer = signed_in(DOORKEEPER).post(
        f"/moderator/rooms/{room.pk}/check", {"fix": "join_rule"}, follow=True
    )

    assert "Your power level in this room does not allow that." in answer.content.decode()
