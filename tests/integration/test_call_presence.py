"""GuestGate follows the call: a let-in guest's account sends its MatrixRTC call membership with
its own session on the guest homeserver (a state event in main's room, over federation), main
pushes it, and moderators see who is in the call; a moderator removes a guest from the call;
the left-call retention ends the account. Real pair, real worker, real web server.

Element Call sends these events through the lobby's widget host (the browser tests); here the
guest's account sends them directly, as EC would (CALL-LAB §4).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from accounts.services import default_policy
from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from matrix import CALL_MEMBER_EVENT, Forbidden, MatrixClient, UnknownToken
from rooms import calls
from rooms.calls import guests_in_call_count
from rooms.expiry import LEFT_CALL, expire_accounts
from rooms.membership import PUSH_GRACE_SECONDS, call_room_memberships_reconcile
from rooms.models import (
    AuditEntry,
    CallPresence,
    CallRoom,
    CallStatus,
    JoinRequest,
    MembershipEvent,
)
from rooms.moderation import join_request_approve, join_request_remove_from_call
from rooms.provisioning import requeue_stuck_join_requests
from tests.conftest import Person
from tests.faultproxy import FaultProxy
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


def call_content(device_id: str) -> dict[str, Any]:
    """What Element Call 0.26 sends when a device joins (CALL-LAB §4)."""
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": uuid.uuid4().hex,
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
        "foci_preferred": [],
    }


class InTheRoom:
    """A let-in guest with their session, sending call membership as Element Call does."""

    def __init__(self, join_request: JoinRequest, session: dict[str, Any]) -> None:
        self.join_request = join_request
        self.session = session
        self.client = MatrixClient(
            base_url=session["homeserverUrl"], access_token=session["accessToken"]
        )

    def state_key(self, device_id: str | None = None) -> str:
        return f"_{self.session['userId']}_{device_id or self.session['deviceId']}_m.call"

    def join_call(self, device_id: str | None = None) -> str:
        """Element Call's join, from the session's device (or another of the guest's)."""
        return self.client.set_state(
            self.session["roomId"],
            CALL_MEMBER_EVENT,
            call_content(device_id or self.session["deviceId"]),
            state_key=self.state_key(device_id),
        )

    def leave_call(self, device_id: str | None = None) -> str:
        return self.client.set_state(
            self.session["roomId"], CALL_MEMBER_EVENT, {}, state_key=self.state_key(device_id)
        )

    def call(self) -> CallStatus:
        return JoinRequest.objects.get(pk=self.join_request.pk).call


@pytest.fixture
def ann(guest: GuestBrowser, invite_token: str) -> Iterator[InTheRoom]:
    guest.ask_to_join(invite_token, "Ann")
    guest.wait_for("waiting")
    join_request = JoinRequest.objects.get()
    join_request_approve(join_request, moderator="@mona:main")
    session = guest.wait_for("joined")["session"]
    person = InTheRoom(join_request, session)

    def joined_on_the_guest_server() -> bool:
        # The lobby may say "joined" from main's push of the join a moment before the guest's
        # own server has finished the join (send_join answered, not yet stored there).
        try:
            member = person.client.member(session["roomId"], session["userId"])
        except Forbidden:  # "not in room" there yet
            return False
        return member is not None and member.membership == "join"

    wait_for(joined_on_the_guest_server, what="Ann's join finished on the guest server")
    yield person
    person.client.close()


@pytest.fixture
def mona(guestgate_web: str, moderator: Person) -> Iterator[ModeratorBrowser]:
    browser = ModeratorBrowser(guestgate_web)
    assert browser.sign_in(moderator.user_id, moderator.password).status_code == 302
    yield browser
    browser.close()


def call_state(state: str) -> Any:
    """A dashboard queue whose let-in guest is shown in this call state."""
    return lambda queue: f'data-call="{state}"' in queue["html"]


def applied(event_id: str) -> bool:
    return MembershipEvent.objects.filter(event_id=event_id, applied_at__isnull=False).exists()


def test_moderators_see_a_guest_join_and_leave_the_call_live(
    ann: InTheRoom, mona: ModeratorBrowser, call_room: CallRoom
) -> None:
    mona.wait_for_queue(call_room.pk, call_state("not_joined"))

    ann.join_call()
    queue = mona.wait_for_queue(call_room.pk, call_state("in_call"))
    assert "in the call" in queue["html"]
    assert guests_in_call_count() == 1
    let_in = mona.http.get(f"/api/v1/rooms/{call_room.pk}/let-in").json()
    assert [(g["user_id"], g["call"]["state"]) for g in let_in] == [
        (ann.session["userId"], "in_call")
    ]

    ann.leave_call()
    queue = mona.wait_for_queue(call_room.pk, call_state("left"))
    assert "left the call" in queue["html"]
    assert guests_in_call_count() == 0
    assert ann.call().state == CallStatus.LEFT


def test_a_replayed_or_late_push_changes_nothing(
    ann: InTheRoom, call_room: CallRoom, guestgate_web: str
) -> None:
    join_id = ann.join_call()
    leave_id = ann.leave_call()
    wait_for(lambda: applied(leave_id), what="the leave applied")
    join = MembershipEvent.objects.get(event_id=join_id)
    assert join.origin_server_ts is not None
    before = list(CallPresence.objects.values())

    def raw(event_id: str, ts: int) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "room_id": call_room.room_id,
            "type": CALL_MEMBER_EVENT,
            "sender": ann.session["userId"],
            "state_key": ann.state_key(),
            "content": call_content(ann.session["deviceId"]),
            "origin_server_ts": ts,
        }

    late = f"$late{uuid.uuid4().hex}"
    push = {"events": [raw(join_id, join.origin_server_ts), raw(late, join.origin_server_ts - 1)]}
    answer = httpx.put(
        f"{guestgate_web}/_matrix/app/v1/transactions/replay{uuid.uuid4().hex}",
        json=push,
        headers={"Authorization": f"Bearer {settings.MAIN_HS_TOKEN}"},
    )

    assert answer.status_code == 200
    wait_for(lambda: applied(late), what="the late push applied")
    assert MembershipEvent.objects.filter(event_id=join_id).count() == 1
    assert list(CallPresence.objects.values()) == before
    assert ann.call().state == CallStatus.LEFT


def reconcile_a_minute_later(call_room: CallRoom) -> int:
    """The minute's reconciliation, run once main's changes are old enough to call lost."""
    assert call_room_memberships_reconcile(call_room) == 0  # too recent to call them lost
    later = timezone.now() + timedelta(seconds=PUSH_GRACE_SECONDS + 1)
    return call_room_memberships_reconcile(call_room, now=later)


def test_a_call_join_whose_push_was_lost_is_taken_from_mains_state(
    ann: InTheRoom, call_room: CallRoom
) -> None:
    joined = ann.join_call()
    wait_for(lambda: applied(joined), what="the join applied")
    # As if main's push of Ann's call membership had never arrived:
    MembershipEvent.objects.filter(event_id=joined).delete()
    CallPresence.objects.all().delete()
    assert ann.call().state == CallStatus.NOT_JOINED

    assert reconcile_a_minute_later(call_room) == 1

    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call again")
    presence = CallPresence.objects.get()
    assert (presence.device_id, presence.event_id) == (ann.session["deviceId"], joined)
    assert CallRoom.objects.get(pk=call_room.pk).push_gap_events == 1
    assert call_room_memberships_reconcile(call_room) == 0  # known now


def test_a_call_leave_whose_push_was_lost_is_taken_from_mains_state(
    ann: InTheRoom, call_room: CallRoom
) -> None:
    joined = ann.join_call()
    wait_for(lambda: applied(joined), what="the join applied")
    in_call = list(CallPresence.objects.values())
    left = ann.leave_call()
    wait_for(lambda: applied(left), what="the leave applied")
    # As if main's push of the leave had never arrived:
    MembershipEvent.objects.filter(event_id=left).delete()
    for row in in_call:
        CallPresence.objects.filter(pk=row["id"]).update(**row)
    assert ann.call().state == CallStatus.IN_CALL

    assert reconcile_a_minute_later(call_room) == 1

    wait_for(lambda: ann.call().state == CallStatus.LEFT, what="Ann out of the call")
    assert CallPresence.objects.get().event_id == left
    assert guests_in_call_count() == 0


def test_a_moderator_removes_a_guest_from_the_call(
    ann: InTheRoom,
    guest: GuestBrowser,
    mona: ModeratorBrowser,
    call_room: CallRoom,
    moderator: Person,
    main_bot: MatrixClient,
) -> None:
    ann.join_call()
    mona.wait_for_queue(call_room.pk, call_state("in_call"))
    pk = ann.join_request.pk

    answer = mona.post(f"/moderator/requests/{pk}/remove-from-call", reason="Wrong meeting")

    assert answer.status_code == 302
    removed = guest.wait_for("removed")
    assert removed["reason"] == "Wrong meeting"
    assert removed["title"] == "You were removed from the call"
    assert removed["session"] is None
    member = main_bot.member(call_room.room_id, ann.session["userId"])
    assert member is not None and member.membership == "leave"
    wait_for(
        lambda: MembershipEvent.objects.filter(
            user_id=ann.session["userId"], membership="leave", applied_at__isnull=False
        ).exists(),
        what="main's push of the kick applied",
    )
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.REMOVED)
    assert [(e.actor, e.reason) for e in entries] == [(moderator.user_id, "Wrong meeting")]
    assert ann.call().state == CallStatus.LEFT
    assert guests_in_call_count() == 0


def call_member_on_main(main_bot: MatrixClient, ann: InTheRoom) -> dict[str, Any] | None:
    return main_bot.state_event(ann.session["roomId"], CALL_MEMBER_EVENT, ann.state_key())


def test_a_removed_guest_leaves_the_call_on_main_too(
    ann: InTheRoom, guest: GuestBrowser, mona: ModeratorBrowser, main_bot: MatrixClient
) -> None:
    ann.join_call()
    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call")
    assert call_member_on_main(main_bot, ann)  # main lists Ann's device in the call

    mona.post(f"/moderator/requests/{ann.join_request.pk}/remove-from-call", reason="Bye")

    guest.wait_for("removed")
    wait_for(lambda: call_member_on_main(main_bot, ann) == {}, what="Ann's membership ended")
    cleared = wait_for(
        lambda: AuditEntry.objects.filter(action=AuditEntry.Action.CALL_CLEARED).first(),
        what="the clear-out recorded",
    )
    assert cleared.reason == ann.state_key()
    assert JoinRequest.objects.get(pk=ann.join_request.pk).status == "removed"
    wait_for(lambda: ann.call().state == CallStatus.LEFT, what="Ann shown out of the call")
    assert guests_in_call_count() == 0


def test_the_clear_out_is_retried_when_main_fails_at_first(
    ann: InTheRoom, mona: ModeratorBrowser, main_bot: MatrixClient, main_hs_proxy: FaultProxy
) -> None:
    ann.join_call()
    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call")
    # Every attempt of the task's first run fails (the client's own retries too).
    fault = main_hs_proxy.fail(
        "PUT", r"/state/org\.matrix\.msc3401\.call\.member/", times=settings.MATRIX_RETRIES + 1
    )

    mona.post(f"/moderator/requests/{ann.join_request.pk}/remove-from-call", reason="Bye")

    wait_for(lambda: call_member_on_main(main_bot, ann) == {}, what="Ann's membership ended")
    assert fault.hits == settings.MATRIX_RETRIES + 1
    wait_for(
        lambda: AuditEntry.objects.filter(action=AuditEntry.Action.CALL_CLEARED).count() == 1,
        what="the clear-out recorded once",
    )
    assert ann.call().state == CallStatus.LEFT


def test_a_clear_out_whose_task_was_lost_is_sent_again_by_the_minutes_requeue(
    ann: InTheRoom, main_bot: MatrixClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann.join_call()
    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call")
    with monkeypatch.context() as lost:  # the broker took nothing: the task never ran
        lost.setattr(calls, "send_after_commit", lambda *args: None)
        removed = JoinRequest.objects.select_related("room").get(pk=ann.join_request.pk)
        join_request_remove_from_call(removed, moderator="@mona:main", reason="Bye")
    request = JoinRequest.objects.get(pk=ann.join_request.pk)
    assert (request.status, request.call_cleared_at) == ("removed", None)
    assert call_member_on_main(main_bot, ann)  # still listed in the call on main
    JoinRequest.objects.filter(pk=request.pk).update(
        updated_at=timezone.now() - timedelta(minutes=3)
    )

    assert requeue_stuck_join_requests() == 1

    wait_for(lambda: call_member_on_main(main_bot, ann) == {}, what="Ann's membership ended")
    wait_for(
        lambda: JoinRequest.objects.filter(pk=request.pk, call_cleared_at__isnull=False).exists(),
        what="the clear-out recorded",
    )
    assert requeue_stuck_join_requests() == 0


def test_a_kick_in_a_matrix_client_ends_the_guests_call_membership_on_main_too(
    ann: InTheRoom,
    guest: GuestBrowser,
    call_room: CallRoom,
    moderator: Person,
    main_bot: MatrixClient,
) -> None:
    ann.join_call()
    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call")

    moderator.client.kick(call_room.room_id, ann.session["userId"], reason="Enough")

    guest.wait_for("removed")
    wait_for(lambda: call_member_on_main(main_bot, ann) == {}, what="Ann's membership ended")


def test_a_kick_in_a_matrix_client_removes_the_guest_from_the_call(
    ann: InTheRoom, guest: GuestBrowser, call_room: CallRoom, moderator: Person
) -> None:
    ann.join_call()
    wait_for(lambda: ann.call().state == CallStatus.IN_CALL, what="Ann in the call")

    moderator.client.kick(call_room.room_id, ann.session["userId"], reason="Enough")

    assert guest.wait_for("removed")["reason"] == "Enough"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.REMOVED)
    assert (entry.actor, entry.via_guestgate) == (moderator.user_id, False)
    assert ann.call().state == CallStatus.LEFT


def sweep() -> list[int]:
    """What beat does every minute, with the left-call rule; the accounts claimed."""
    batches = accounts_claim_due(rules=[LEFT_CALL])
    for batch in batches:
        expire_accounts.delay(batch)
    return [pk for batch in batches for pk in batch]


def test_the_left_call_retention_ends_the_account_but_not_while_in_the_call(
    ann: InTheRoom,
) -> None:
    policy = default_policy()
    policy.left_call_timeout = timedelta(seconds=1)
    policy.save()
    account = GuestAccount.objects.get(user_id=ann.session["userId"])
    laptop, phone = ann.session["deviceId"], "PHONE"  # a second device of the guest's

    ann.join_call()
    ann.join_call(phone)
    left = ann.leave_call()
    wait_for(lambda: applied(left), what="the laptop's leave applied")
    presence = CallPresence.objects.get(device_id=laptop)
    assert presence.left_at is not None
    wait_for(
        lambda: timezone.now() > presence.left_at + policy.left_call_timeout,  # type: ignore[operator]
        what="the laptop's leave older than the policy's time",
    )
    assert ann.call().state == CallStatus.IN_CALL
    assert sweep() == []  # the phone is still in the call

    ann.leave_call(phone)
    wait_for(lambda: ann.call().state == CallStatus.LEFT, what="Ann out of the call")
    claimed = wait_for(sweep, what="the sweep claiming Ann's account")

    assert claimed == [account.pk]
    wait_for(
        lambda: GuestAccount.objects.filter(pk=account.pk, status="expired").exists(),
        what="the account ended",
    )
    assert GuestAccount.objects.get(pk=account.pk).expiry_reason == "left call"
    with pytest.raises(UnknownToken):
        ann.client.whoami()
