"""Moderators at the dashboard, against the real pair, the real worker and web server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from devtools.localpair import LocalPair
from matrix import Forbidden, MatrixClient
from rooms.joining import join_guest
from rooms.models import AuditEntry, CallRoom, JoinRequest
from rooms.moderation import approve_claimed
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


@pytest.fixture
def mona(guestgate_web: str, moderator: Person) -> Iterator[ModeratorBrowser]:
    """The room's moderator, signed in at the dashboard."""
    browser = ModeratorBrowser(guestgate_web)
    assert browser.sign_in(moderator.user_id, moderator.password).status_code == 302
    yield browser
    browser.close()


def joined_on_main(main_bot: MatrixClient, room: CallRoom, request: JoinRequest) -> None:
    """Main shows the guest joined. GuestGate's "joined" is the guest homeserver's answer;
    main hears of it a moment later when that server is in the room already (MATRIX-LAB P5,
    for joins as for knocks)."""

    def joined() -> bool:
        member = main_bot.member(room.room_id, request.user_id)
        return member is not None and member.membership == "join"

    wait_for(joined, what=f"{request.display_name}'s join on main")


def waiting_guest(guest: GuestBrowser, token: str, name: str) -> JoinRequest:
    guest.ask_to_join(token, name)
    guest.wait_for("waiting")
    return JoinRequest.objects.get(display_name=f"{name} (Guest)")


def test_a_wrong_password_says_so_without_saying_whether_the_account_exists(
    guestgate_web: str, moderator: Person
) -> None:
    browser = ModeratorBrowser(guestgate_web)

    wrong = browser.sign_in(moderator.user_id, "not the password")
    unknown = browser.sign_in("@nobody_here:localhost", "whatever")

    assert wrong.status_code == unknown.status_code == 400
    assert "Wrong Matrix id or password." in wrong.text
    assert "Wrong Matrix id or password." in unknown.text
    assert browser.http.get("/moderator/").status_code == 302  # still signed out


def test_a_knock_appears_in_the_queue_live(
    mona: ModeratorBrowser, guest: GuestBrowser, call_room: CallRoom, invite_token: str
) -> None:
    before = mona.queue(call_room.pk)
    assert "Nobody is waiting." in before["html"]

    guest.ask_to_join(invite_token, "Alice")

    state = mona.wait_for_queue(call_room.pk, lambda s: s["waiting"] == 1)
    assert "Alice (Guest)" in state["html"]
    assert ">guest<" in state["html"]


def test_approving_at_the_dashboard_lets_the_guest_in(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    call_room: CallRoom,
    invite_token: str,
    main_bot: MatrixClient,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Bob")

    assert mona.post(f"/moderator/requests/{request.pk}/approve").status_code == 302

    guest.wait_for("joined")
    joined_on_main(main_bot, call_room, request)
    entry = AuditEntry.objects.get(action=AuditEntry.Action.APPROVED)
    assert (entry.actor, entry.subject, entry.via_guestgate) == (
        moderator.user_id,
        request.user_id,
        True,
    )


def test_a_denial_with_a_reason_reaches_the_lobby(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Mallory")

    mona.post(f"/moderator/requests/{request.pk}/deny", reason="Private meeting, sorry")

    state = guest.wait_for("denied")
    assert state["reason"] == "Private meeting, sorry"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DENIED)
    assert (entry.actor, entry.reason) == (moderator.user_id, "Private meeting, sorry")


def test_a_banned_guest_cannot_knock_again(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    guest_appservice: MatrixClient,
    homeserver_pair: LocalPair,
) -> None:
    request = waiting_guest(guest, invite_token, "Trudy")

    mona.post(f"/moderator/requests/{request.pk}/ban", reason="spam", confirmed="yes")

    guest.wait_for("banned")
    with pytest.raises(Forbidden):
        guest_appservice.as_user(request.user_id).knock(
            call_room.room_id, via=[homeserver_pair.main.server_name]
        )


def test_an_approval_in_a_matrix_client_is_reflected_in_the_queue(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Carol")
    mona.wait_for_queue(call_room.pk, lambda s: s["waiting"] == 1)

    moderator.client.invite(call_room.room_id, request.user_id, reason="from Element")

    state = mona.wait_for_queue(call_room.pk, lambda s: s["waiting"] == 0)
    assert "<strong>Carol (Guest)</strong> " in state["html"]  # now under "Recently"
    assert f"by {moderator.user_id}" in state["html"]
    guest.wait_for("joined")
    entry = AuditEntry.objects.get(action=AuditEntry.Action.APPROVED)
    assert (entry.actor, entry.via_guestgate) == (moderator.user_id, False)


def test_two_moderators_approving_at_once_cause_one_effect(
    guestgate_web: str,
    guest: GuestBrowser,
    invite_token: str,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Dave")
    first, second = ModeratorBrowser(guestgate_web), ModeratorBrowser(guestgate_web)
    for browser in (first, second):
        browser.sign_in(moderator.user_id, moderator.password)
    pages = []

    def click(browser: ModeratorBrowser) -> None:
        browser.post(f"/moderator/requests/{request.pk}/approve")
        pages.append(browser.room_page(JoinRequest.objects.get(pk=request.pk).room_id).text)

    threads = [threading.Thread(target=click, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    guest.wait_for("joined")
    assert AuditEntry.objects.filter(action=AuditEntry.Action.APPROVED).count() == 1
    told = [page for page in pages if "was already handled by" in page]
    assert len(told) <= 1  # the slower click is told (unless it came after the join)


def test_someone_with_their_own_account_knocking_is_shown_as_such(
    mona: ModeratorBrowser,
    call_room: CallRoom,
    member: Person,
    homeserver_pair: LocalPair,
    main_bot: MatrixClient,
) -> None:
    member.client.knock(
        call_room.room_id, via=[homeserver_pair.main.server_name], reason="I'm from accounting"
    )

    state = mona.wait_for_queue(call_room.pk, lambda s: s["waiting"] == 1)
    assert "Max Member" in state["html"]
    assert "Matrix account" in state["html"]
    request = JoinRequest.objects.get(user_id=member.user_id)
    mona.post(f"/moderator/requests/{request.pk}/approve")
    invited = main_bot.member(call_room.room_id, member.user_id)
    assert invited is not None and invited.membership == "invite"


def test_a_member_without_power_sees_nothing_of_the_room(
    guestgate_web: str,
    call_room: CallRoom,
    member: Person,
) -> None:
    browser = ModeratorBrowser(guestgate_web)
    browser.sign_in(member.user_id, member.password)

    assert call_room.name not in browser.http.get("/moderator/").text
    assert browser.room_page(call_room.pk).status_code == 404
    assert browser.http.get(f"/moderator/rooms/{call_room.pk}/queue").status_code == 404


def test_power_level_changes_take_effect_without_a_restart(
    guestgate_web: str,
    call_room: CallRoom,
    member: Person,
    moderator: Person,
) -> None:
    browser = ModeratorBrowser(guestgate_web)
    browser.sign_in(member.user_id, member.password)
    assert browser.room_page(call_room.pk).status_code == 404

    levels = moderator.client.state_event(call_room.room_id, "m.room.power_levels") or {}
    levels["users"] = {**levels.get("users", {}), member.user_id: 50}
    moderator.client.set_state(call_room.room_id, "m.room.power_levels", levels)

    from tests.waiting import wait_for

    wait_for(
        lambda: browser.room_page(call_room.pk).status_code == 200,
        what="the new power level to reach GuestGate",
    )


def test_the_api_approves_and_denies_like_the_dashboard(
    mona: ModeratorBrowser,
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
) -> None:
    alice, bob = GuestBrowser(guestgate_web), GuestBrowser(guestgate_web)
    first = waiting_guest(alice, invite_token, "Alice")
    second = waiting_guest(bob, invite_token, "Bob")
    csrf = {"X-CSRFToken": mona.http.cookies["csrftoken"]}

    queue = mona.http.get(f"/api/v1/rooms/{call_room.pk}/join-requests").json()
    approved = mona.http.post(f"/api/v1/join-requests/{first.pk}/approve", headers=csrf)
    denied = mona.http.post(
        f"/api/v1/join-requests/{second.pk}/deny", headers=csrf, json={"reason": "Full room"}
    )

    assert {r["display_name"] for r in queue} == {"Alice (Guest)", "Bob (Guest)"}
    # Invited when the bot's invite returned; the worker may already have started the join.
    assert approved.status_code == 200
    assert approved.json()["status"] in ("invited", "joining", "joined")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    alice.wait_for("joined")
    assert bob.wait_for("denied")["reason"] == "Full room"


def test_letting_everyone_in_invites_them_all_through_the_worker(
    mona: ModeratorBrowser,
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
    moderator: Person,
) -> None:
    guests = [GuestBrowser(guestgate_web) for _ in range(4)]
    requests = [waiting_guest(g, invite_token, f"Crowd{n}") for n, g in enumerate(guests)]

    page = mona.post(f"/moderator/rooms/{call_room.pk}/approve-all")

    assert page.status_code == 302
    for guest in guests:
        guest.wait_for("joined")
    for request in requests:
        joined_on_main(main_bot, call_room, request)
    approvals = AuditEntry.objects.filter(action=AuditEntry.Action.APPROVED)
    assert sorted(a.subject for a in approvals) == sorted(r.user_id for r in requests)
    assert {a.actor for a in approvals} == {moderator.user_id}


def test_one_task_of_letting_everyone_in_invites_and_joins_its_guest(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The join is not queued behind every other invite of the room (make bench, 500 guests:
    the median guest joined 72 s after the click when each join was a task of its own)."""
    request = waiting_guest(guest, invite_token, "Solo")
    JoinRequest.objects.filter(pk=request.pk).update(decided_by="@mona:test")  # the click's claim
    joins_queued: list[int] = []
    monkeypatch.setattr(join_guest, "delay", joins_queued.append)

    approve_claimed(request.pk, "@mona:test")  # here, not by the worker

    request.refresh_from_db()
    assert request.status == JoinRequest.Status.JOINED  # when the task ends
    assert joins_queued == []
    joined_on_main(main_bot, call_room, request)
