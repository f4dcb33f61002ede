"""A ban undone moments after it was made, against the real pair, worker and web server: the
bot lifts it on main, the guest is denied (not banned) and may ask again; the window's end and
a moderator without the ban right are refused; bans and unbans in a Matrix client are followed
as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from devtools.localpair import LocalPair
from matrix import MatrixClient
from rooms.models import AuditEntry, CallRoom, JoinRequest, MembershipEvent
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]

Status = JoinRequest.Status
Action = AuditEntry.Action


@pytest.fixture
def mona(guestgate_web: str, moderator: Person) -> Iterator[ModeratorBrowser]:
    """The room's moderator (its creator: every right), signed in at the dashboard."""
    browser = ModeratorBrowser(guestgate_web)
    assert browser.sign_in(moderator.user_id, moderator.password).status_code == 302
    yield browser
    browser.close()


def waiting_guest(guest: GuestBrowser, token: str, name: str) -> JoinRequest:
    guest.ask_to_join(token, name)
    guest.wait_for("waiting")
    return JoinRequest.objects.get(display_name=f"{name} (Guest)")


def membership_on_main(main_bot: MatrixClient, room: CallRoom, user_id: str) -> str | None:
    member = main_bot.member(room.room_id, user_id)
    return member.membership if member is not None else None


def banned_from_the_dashboard(
    mona: ModeratorBrowser, guest: GuestBrowser, request: JoinRequest, reason: str = ""
) -> None:
    answer = mona.post(f"/moderator/requests/{request.pk}/ban", reason=reason, confirmed="yes")
    assert answer.status_code == 302
    guest.wait_for("banned")


def audit_actions(request: JoinRequest) -> list[str]:
    return list(
        AuditEntry.objects.filter(join_request=request)
        .order_by("pk")
        .values_list("action", flat=True)
    )


def test_matrix_client_lifts_a_ban_and_an_absent_ban_counts_as_lifted(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    guest_user_id: str,
    knock_room: str,
) -> None:
    guest = guest_appservice.as_user(guest_user_id)
    guest.knock(knock_room, via=[homeserver_pair.main.server_name])
    main_bot.ensure_banned(knock_room, guest_user_id, reason="spam")

    lifted = main_bot.ensure_unbanned(knock_room, guest_user_id, reason="undo")
    again = main_bot.ensure_unbanned(knock_room, guest_user_id)

    assert (lifted, again) == (True, False)
    member = main_bot.member(knock_room, guest_user_id)
    assert member is not None and member.membership == "leave"
    guest.knock(knock_room, via=[homeserver_pair.main.server_name])  # allowed again


def test_a_ban_undone_at_once_is_lifted_on_main_and_leaves_the_guest_denied(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Trudy")
    banned_from_the_dashboard(mona, guest, request, reason="Wrong room")
    assert membership_on_main(main_bot, call_room, request.user_id) == "ban"
    room_page = mona.room_page(call_room.pk).text
    assert "Banned Trudy (Guest)." in room_page
    assert f"/moderator/requests/{request.pk}/unban" in room_page

    answer = mona.post(f"/moderator/requests/{request.pk}/unban")

    assert answer.status_code == 302
    state = guest.wait_for("denied")
    assert state["reason"] == "Wrong room"  # the moderator's words stay; not "banned"
    assert membership_on_main(main_bot, call_room, request.user_id) == "leave"
    wait_for(
        lambda: MembershipEvent.objects.filter(
            room_id=call_room.room_id,
            user_id=request.user_id,
            prev_membership="ban",
            membership="leave",
            applied_at__isnull=False,
        ).exists(),
        what="main's push of the unban, applied",
    )
    request.refresh_from_db()
    assert request.status == Status.DENIED
    assert audit_actions(request) == [Action.KNOCKED, Action.BANNED, Action.BAN_UNDONE]
    undo = AuditEntry.objects.get(join_request=request, action=Action.BAN_UNDONE)
    assert (undo.actor, undo.via_guestgate) == (moderator.user_id, True)
    page = mona.room_page(call_room.pk).text
    assert "The ban is undone" in page
    assert "Banned Trudy (Guest)." not in page


def test_after_the_window_the_undo_is_refused_and_changes_nothing(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    request = waiting_guest(guest, invite_token, "Eve")
    banned_from_the_dashboard(mona, guest, request)
    # The ban was made 31 s ago, as far as GuestGate knows.
    JoinRequest.objects.filter(pk=request.pk).update(
        updated_at=timezone.now() - timedelta(seconds=31)
    )
    assert "Banned Eve (Guest)." not in mona.room_page(call_room.pk).text

    mona.post(f"/moderator/requests/{request.pk}/unban")

    assert "Too late to undo" in mona.room_page(call_room.pk).text
    request.refresh_from_db()
    assert request.status == Status.BANNED
    assert membership_on_main(main_bot, call_room, request.user_id) == "ban"
    assert not AuditEntry.objects.filter(action=Action.BAN_UNDONE).exists()


def test_a_moderator_without_the_ban_right_may_not_undo(
    guestgate_web: str,
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    member: Person,
    moderator: Person,
    main_bot: MatrixClient,
) -> None:
    levels = moderator.client.state_event(call_room.room_id, "m.room.power_levels") or {}
    levels["users"] = {**levels.get("users", {}), member.user_id: 25}
    levels |= {"invite": 0, "kick": 25, "ban": 50}
    moderator.client.set_state(call_room.room_id, "m.room.power_levels", levels)
    wait_for(
        lambda: CallRoom.objects.get(pk=call_room.pk).levels.users.get(member.user_id) == 25,
        what="the new power levels at GuestGate",
    )
    max_ = ModeratorBrowser(guestgate_web)
    max_.sign_in(member.user_id, member.password)
    request = waiting_guest(guest, invite_token, "Oscar")
    banned_from_the_dashboard(mona, guest, request)
    assert "Banned Oscar (Guest)." not in max_.room_page(call_room.pk).text

    max_.post(f"/moderator/requests/{request.pk}/unban")

    assert "does not allow that" in max_.room_page(call_room.pk).text
    request.refresh_from_db()
    assert request.status == Status.BANNED
    assert membership_on_main(main_bot, call_room, request.user_id) == "ban"
    max_.close()


def test_bans_and_unbans_in_a_matrix_client_are_followed_as_before(
    guest: GuestBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
) -> None:
    request = waiting_guest(guest, invite_token, "Mallory")

    moderator.client.ban(call_room.room_id, request.user_id, reason="from Element")

    assert guest.wait_for("banned")["reason"] == "from Element"
    moderator.client.unban(call_room.room_id, request.user_id)
    wait_for(
        lambda: MembershipEvent.objects.filter(
            user_id=request.user_id, prev_membership="ban", applied_at__isnull=False
        ).exists(),
        what="main's push of the unban, applied",
    )
    request.refresh_from_db()
    assert request.status == Status.BANNED  # GuestGate's record of the ban stays
    entry = AuditEntry.objects.get(join_request=request, action=Action.BANNED)
    assert (entry.actor, entry.via_guestgate) == (moderator.user_id, False)
    assert audit_actions(request) == [Action.KNOCKED, Action.BANNED]
