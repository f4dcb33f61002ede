"""A person with no Matrix account ends up in the call room, against the real pair, a real
Celery worker and GuestGate's real web server."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

from accounts.models import GuestAccount
from accounts.selectors import guest_account_session
from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from matrix import MatrixClient
from rooms.invite_links import invite_link_create
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve
from tests.conftest import Person
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


def membership_on_main(main_bot: MatrixClient, room: CallRoom, user_id: str) -> str | None:
    member = main_bot.member(room.room_id, user_id)
    return member.membership if member else None


def knock_path(room: CallRoom) -> str:
    """The path pattern of knocks on this test's room only: a knock the client retries after
    the previous test ended (its answer lost, MATRIX-LAB P5) must not take this test's fault."""
    return "/knock/" + re.escape(quote(room.room_id, safe=""))


def the_request() -> JoinRequest:
    return JoinRequest.objects.select_related("guest", "room").get()


def test_a_guest_approved_in_a_matrix_client_ends_up_in_the_call(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    main_bot: MatrixClient,
    homeserver_pair: LocalPair,
) -> None:
    answer = guest.ask_to_join(invite_token, "Alice")
    assert answer.status_code == 302

    waiting = guest.wait_for("waiting")
    request = the_request()
    assert waiting["display_name"] == "Alice (Guest)"
    assert membership_on_main(main_bot, call_room, request.user_id) == "knock"

    # The moderator lets Alice in from their own Matrix client, not through GuestGate.
    moderator.client.invite(call_room.room_id, request.user_id, reason="welcome")
    joined = guest.wait_for("joined")

    assert membership_on_main(main_bot, call_room, request.user_id) == "join"
    session = joined["session"]
    assert session["roomId"] == call_room.room_id
    assert session["via"] == [homeserver_pair.main.server_name]
    assert session["homeserverUrl"] == homeserver_pair.guest.client_url
    with MatrixClient(base_url=session["homeserverUrl"], access_token=session["accessToken"]) as c:
        who = c.whoami()
    assert (who.user_id, who.device_id) == (session["userId"], session["deviceId"])
    assert joined["call_url"].startswith("https://call.element.io/room/#/?roomId=%21")
    assert the_request().decided_by == moderator.user_id


def test_a_guest_approved_through_guestgate_is_joined(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, main_bot: MatrixClient
) -> None:
    guest.ask_to_join(invite_token, "Bob")
    guest.wait_for("waiting")

    join_request_approve(the_request(), moderator="@mona:main")

    guest.wait_for("joined")
    assert membership_on_main(main_bot, call_room, the_request().user_id) == "join"


def test_a_denial_with_a_reason_reaches_the_lobby(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    main_bot: MatrixClient,
) -> None:
    guest.ask_to_join(invite_token, "Mallory")
    guest.wait_for("waiting")
    user_id = the_request().user_id

    moderator.client.kick(call_room.room_id, user_id, reason="Not on the guest list")

    denied = guest.wait_for("denied")
    assert denied["reason"] == "Not on the guest list"
    assert "Not on the guest list" in guest.lobby().text
    assert membership_on_main(main_bot, call_room, user_id) == "leave"


def test_a_guest_who_cancels_leaves_no_knock_behind(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, main_bot: MatrixClient
) -> None:
    guest.ask_to_join(invite_token, "Carol")
    guest.wait_for("waiting")
    user_id = the_request().user_id

    assert guest.press("cancel").status_code == 302

    assert guest.wait_for("cancelled")["can_cancel"] is False
    from tests.waiting import wait_for

    wait_for(
        lambda: membership_on_main(main_bot, call_room, user_id) == "leave",
        what="the knock withdrawn on main",
    )


def test_a_pre_approved_link_lets_the_guest_in_without_a_moderator(
    guest: GuestBrowser, call_room: CallRoom, main_bot: MatrixClient
) -> None:
    token = invite_link_create(room=call_room, created_by="test", pre_approved=True).token

    guest.ask_to_join(token, "Dave")

    guest.wait_for("joined")
    request = the_request()
    assert request.decided_by == "a pre-approved invite link"
    assert membership_on_main(main_bot, call_room, request.user_id) == "join"


def denied_once(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, moderator: Person, name: str
) -> JoinRequest:
    """The guest asks to join and is turned away (kicked on main): their first request."""
    guest.ask_to_join(invite_token, name)
    guest.wait_for("waiting")
    first = the_request()
    moderator.client.kick(call_room.room_id, first.user_id, reason="come back later")
    guest.wait_for("denied")
    return first


def test_a_returning_guest_gets_the_same_account_back(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    first = denied_once(guest, invite_token, call_room, moderator, "Erin")

    guest.ask_to_join(invite_token, "Erin")
    guest.wait_for("waiting")

    assert GuestAccount.objects.count() == 1
    assert JoinRequest.objects.filter(user_id=first.user_id).count() == 2


def test_a_returning_guest_who_signed_out_is_given_a_working_session(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    first = denied_once(guest, invite_token, call_room, moderator, "Fay")
    assert first.guest is not None
    session = guest_account_session(first.guest)
    assert session is not None
    old_token = session.access_token
    with MatrixClient(base_url=settings.GUEST_HS_URL, access_token=old_token) as signed_in:
        signed_in.logout()  # "Sign out" in Element Call: the token dies

    guest.ask_to_join(invite_token, "Fay")
    guest.wait_for("waiting")
    moderator.client.invite(call_room.room_id, first.user_id)
    session = guest.wait_for("joined")["session"]

    assert session["userId"] == first.user_id  # the same account back
    assert session["accessToken"] != old_token
    with MatrixClient(base_url=session["homeserverUrl"], access_token=session["accessToken"]) as c:
        assert c.whoami().user_id == first.user_id


@pytest.mark.parametrize(
    "fault",
    [
        # Three failures outlast the client's own two quick retries: the task retries later.
        {"method": "POST", "path": r"/register", "status": 502, "times": 3},
        {"method": "POST", "path": r"/register", "status": 502, "after_forwarding": True},
        {"method": "PUT", "path": r"/displayname", "status": 503},
        {
            "method": "POST",
            "path": r"/login",
            "status": 429,
            "body": {
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": 300,
            },
        },
        {"method": "POST", "path": r"/login", "status": 502, "after_forwarding": True},
        {"method": "POST", "path": "knock", "status": 504, "times": 3},
        {"method": "POST", "path": "knock", "status": 502, "after_forwarding": True},
    ],
    ids=[
        "register-down",
        "register-answer-lost",
        "displayname-503",
        "login-429",
        "login-answer-lost",
        "knock-down",
        "knock-answer-lost",
    ],
)
def test_a_homeserver_failing_mid_provisioning_loses_nothing(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
    guest_hs_proxy: FaultProxy,
    fault: dict[str, Any],
) -> None:
    path = fault.pop("path")
    if path == "knock":
        path = knock_path(call_room)
    armed = guest_hs_proxy.fail(fault.pop("method"), path, **fault)

    guest.ask_to_join(invite_token, "Frank")
    guest.wait_for("waiting", timeout=60)

    assert armed.hits == armed.times  # the fault really happened
    request = the_request()
    assert request.attempts == (1 if armed.times == 3 else 0)  # task retries, seen in the lobby
    assert GuestAccount.objects.count() == 1
    assert request.guest is not None and request.guest.status == GuestAccount.Status.ACTIVE
    assert membership_on_main(main_bot, call_room, request.user_id) == "knock"
    registrations = [s for s in guest_hs_proxy.seen if s[0] == "POST" and "register" in s[1]]
    assert registrations[0][2] == 200  # exactly one account was made; any retry was refused
    assert all(status == 400 for _, _, status in registrations[1:])


def test_a_homeserver_that_stays_down_fails_clearly_and_the_guest_can_retry(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    guest_hs_proxy: FaultProxy,
    settings: Any,
) -> None:
    guest_hs_proxy.fail(
        "POST",
        knock_path(call_room),
        status=403,
        body={"errcode": "M_FORBIDDEN", "error": "Federation denied"},
    )
    guest.ask_to_join(invite_token, "Grace")

    failed = guest.wait_for("failed")
    assert failed["can_retry"] is True
    assert "matrix.forbidden" in failed["reason"]

    guest.press("retry")
    guest.wait_for("waiting")
    assert GuestAccount.objects.count() == 1
