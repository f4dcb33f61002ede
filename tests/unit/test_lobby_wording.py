"""What the lobby says in each state, who it quotes, where it offers "Ask again", the returning
guest recognised before the name form, and a moderator's message to the waiting guests.

No homeserver is needed: the states are set on the rows as the homeserver steps would leave
them (the steps themselves run on the real pair in tests/integration and tests/browser).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from rooms.announcements import AnnouncementRefused, announcement_clean, announcement_send
from rooms.messages import BANNED_BEFORE
from rooms.models import AuditEntry, CallRoom, InviteLink, JoinRequest
from tests.unit.conftest import MODERATOR

pytestmark = pytest.mark.django_db

Status = JoinRequest.Status


@pytest.fixture
def lobby(client: Client, token: str) -> str:
    """The lobby path of Alice, who has just asked to join from ``client``."""
    return str(client.post(f"/j/{token}", {"display_name": "Alice"})["Location"])


@pytest.fixture
def mona(room: CallRoom) -> Client:
    """The room's moderator, signed in."""
    client = Client()
    client.force_login(
        User.objects.create(username=MODERATOR), backend="rooms.moderators.MatrixModeratorBackend"
    )
    return client


def alice_is(status: str, **fields: object) -> JoinRequest:
    JoinRequest.objects.update(status=status, version=2, **fields)
    return JoinRequest.objects.get()


def test_a_guest_banned_before_is_not_told_a_moderator_said_anything(
    client: Client, lobby: str
) -> None:
    alice_is(Status.BANNED, reason="", reason_code=BANNED_BEFORE)

    state = client.get(f"{lobby}/status").json()
    page = client.get(lobby).content.decode()

    assert state["title"] == "You cannot join this call"
    assert state["moderator_said"] is False and state["reason"] == ""
    assert state["can_ask_again"] is False
    assert "The moderator said: " not in page.replace('data-moderator-said="', "")


def test_only_a_moderators_own_typed_reason_is_quoted_as_theirs(client: Client, lobby: str) -> None:
    alice_is(Status.DENIED, reason="Not <b>today</b>", decided_by=MODERATOR)

    state = client.get(f"{lobby}/status").json()
    page = client.get(lobby).content.decode()

    assert state["moderator_said"] is True and state["reason"] == "Not <b>today</b>"
    assert "The moderator said: <q>Not &lt;b&gt;today&lt;/b&gt;</q>" in page


def test_guestgates_own_words_on_a_failure_are_not_quoted(client: Client, lobby: str) -> None:
    alice_is(Status.FAILED, reason="M_UNKNOWN", reason_code="server_failed")

    state = client.get(f"{lobby}/status").json()

    assert state["moderator_said"] is False
    assert state["reason"] == "Something went wrong on the server (M_UNKNOWN). Please try again."
    assert state["can_retry"] is True and state["can_ask_again"] is False


def test_the_name_is_said_while_waiting_and_not_after_the_guest_is_let_in(
    client: Client, lobby: str
) -> None:
    alice_is(Status.WAITING)
    waiting = client.get(f"{lobby}/status").json()
    alice_is(Status.INVITED)
    let_in = client.get(f"{lobby}/status").json()

    assert waiting["show_name"] is True
    assert waiting["message"].startswith("The moderators know you are here")
    assert let_in["show_name"] is False
    assert '<p id="joining-as" hidden>' in client.get(lobby).content.decode()


@pytest.mark.parametrize("status", [Status.CANCELLED, Status.DENIED, Status.REMOVED])
def test_ask_again_is_offered_while_the_link_lets_people_in(
    client: Client, lobby: str, status: str
) -> None:
    alice_is(status)
    offered = client.get(f"{lobby}/status").json()
    InviteLink.objects.update(revoked_at=timezone.now())
    withdrawn = client.get(f"{lobby}/status").json()

    assert offered["can_ask_again"] is True
    assert withdrawn["can_ask_again"] is False
    assert "ask again" not in withdrawn["message"] and "ask again" in offered["message"].lower()


def test_a_banned_guest_is_never_offered_ask_again(client: Client, lobby: str) -> None:
    alice_is(Status.BANNED, reason="Spam", decided_by=MODERATOR)

    assert client.get(f"{lobby}/status").json()["can_ask_again"] is False
    assert client.post(f"{lobby}/ask-again")["Location"] == lobby
    assert JoinRequest.objects.count() == 1


def test_ask_again_after_cancelling_makes_a_new_request_under_the_same_name(
    client: Client, lobby: str
) -> None:
    first = alice_is(Status.CANCELLED)

    response = client.post(f"{lobby}/ask-again")

    new = JoinRequest.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/lobby/{new.public_id}"
    assert new.display_name == first.display_name and new.guest_id == first.guest_id
    assert client.get(response["Location"]).status_code == 200


def test_ask_again_where_the_link_is_revoked_changes_nothing(client: Client, lobby: str) -> None:
    alice_is(Status.CANCELLED)
    InviteLink.objects.update(revoked_at=timezone.now())

    assert client.post(f"{lobby}/ask-again")["Location"] == lobby
    assert JoinRequest.objects.count() == 1


def test_a_returning_browser_is_offered_to_continue_before_the_name_form(
    client: Client, token: str, lobby: str
) -> None:
    client.session.flush()  # the session is gone; the browser key cookie is kept
    client.cookies.pop("sessionid", None)

    page = client.get(f"/j/{token}").content.decode()
    response = client.post(f"/j/{token}", {"continue": "yes"})

    assert "Continue as Alice" in page
    assert response.status_code == 302 and response["Location"] == lobby
    assert client.get(lobby).status_code == 200
    assert JoinRequest.objects.count() == 1


def test_a_returning_browser_whose_request_ended_asks_again_under_its_name(
    client: Client, token: str, lobby: str
) -> None:
    first = alice_is(Status.CANCELLED)

    response = client.post(f"/j/{token}", {"continue": "yes"})

    new = JoinRequest.objects.exclude(pk=first.pk).get()
    assert response["Location"] == f"/lobby/{new.public_id}"
    assert new.display_name == first.display_name


def test_a_new_browser_sees_only_the_name_form(client: Client, token: str, lobby: str) -> None:
    assert "Continue as" not in Client().get(f"/j/{token}").content.decode()


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("   ", "announcement.empty"),
        ("We start\nat 10:05", "announcement.not_one_line"),
        ("x" * 201, "announcement.too_long"),
        ("bidi \u202e trick", "announcement.not_one_line"),
    ],
)
def test_a_message_that_is_not_one_short_line_is_refused(typed: str, code: str) -> None:
    with pytest.raises(AnnouncementRefused) as refused:
        announcement_clean(typed)
    assert refused.value.code == code


def test_a_message_reaches_the_waiting_guests_only_and_is_audited(
    client: Client, lobby: str, room: CallRoom
) -> None:
    alice = alice_is(Status.WAITING)

    reached = announcement_send(room=room, moderator=MODERATOR, text="  We start at 10:05 ")
    state = client.get(f"{lobby}/status?since=2").json()
    alice_is(Status.DENIED)
    nobody = announcement_send(room=room, moderator=MODERATOR, text="Later")

    assert reached == 1 and nobody == 0
    assert state["announcement"] == "We start at 10:05" and state["version"] == 3
    entry = AuditEntry.objects.get(action=AuditEntry.Action.MESSAGED)
    assert (entry.actor, entry.subject, entry.reason) == (
        MODERATOR,
        alice.user_id,
        "We start at 10:05",
    )


def test_a_refused_message_is_shown_by_its_field_and_nothing_is_saved(
    client: Client, lobby: str, mona: Client, room: CallRoom
) -> None:
    alice_is(Status.WAITING)

    response = mona.post(f"/moderator/rooms/{room.pk}/message", {"message": "a\nb"})

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="message-all-error" role="alert"' in page and 'aria-invalid="true"' in page
    assert JoinRequest.objects.get().announcement == ""
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.MESSAGED).exists()


def test_a_moderator_writes_to_one_waiting_guest_from_their_row(
    client: Client, lobby: str, mona: Client, room: CallRoom
) -> None:
    alice = alice_is(Status.WAITING)

    page = mona.get(f"/moderator/rooms/{room.pk}").content.decode()
    response = mona.post(f"/moderator/requests/{alice.pk}/message", {"message": "One moment"})

    assert f'for="message-{alice.pk}"' in page
    assert response.status_code == 302
    assert JoinRequest.objects.get().announcement == "One moment"


def test_someone_without_the_invite_right_cannot_write_to_the_guests(
    client: Client, lobby: str, room: CallRoom
) -> None:
    alice_is(Status.WAITING)
    CallRoom.objects.update(power_levels={"invite": 50, "users": {}})
    outsider = Client()
    outsider.force_login(
        User.objects.create(username="@olaf:main.test"),
        backend="rooms.moderators.MatrixModeratorBackend",
    )

    response = outsider.post(f"/moderator/rooms/{room.pk}/message", {"message": "Hi"})

    assert response.status_code in (302, 404)
    assert JoinRequest.objects.get().announcement == ""
