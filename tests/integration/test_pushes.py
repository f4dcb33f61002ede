"""What main pushes, against the real pair and worker: a change main made that never reached
GuestGate is found in main's state and applied, and /healthz says pushes went missing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from devtools.guestbrowser import GuestBrowser
from matrix import MatrixClient
from rooms.membership import PUSH_GRACE_SECONDS, call_room_memberships_reconcile
from rooms.models import CallRoom, JoinRequest, MembershipEvent
from rooms.moderation import join_request_approve
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


def test_a_kick_whose_push_was_lost_is_taken_from_mains_state(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    guest.ask_to_join(invite_token, "Lou")
    guest.wait_for("waiting")
    request = JoinRequest.objects.get(display_name="Lou (Guest)")
    moderator.client.kick(call_room.room_id, request.user_id, reason="members only")
    guest.wait_for("denied")
    # As if main's push of the kick had never arrived:
    MembershipEvent.objects.filter(user_id=request.user_id, membership="leave").delete()
    JoinRequest.objects.filter(pk=request.pk).update(status="waiting", reason="", decided_by="")
    guest.wait_for("waiting")
    assert call_room_memberships_reconcile(call_room) == 0  # too recent to call it lost

    later = timezone.now() + timedelta(seconds=PUSH_GRACE_SECONDS + 1)
    assert call_room_memberships_reconcile(call_room, now=later) == 1

    state = guest.wait_for("denied")  # applied by the worker, like a push
    assert state["reason"] == "members only"
    assert call_room_memberships_reconcile(call_room, now=later) == 0  # known now
    pushes = Client().get("/healthz").json()["checks"]["appservice_pushes"]
    assert pushes["ok"] is False
    assert "taken from main's state" in pushes["detail"]
    assert pushes["push_gap_events"] == 1


def test_a_guest_who_renames_themselves_with_their_own_token_gets_their_name_back(
    guest: GuestBrowser, invite_token: str, call_room: CallRoom, main_bot: MatrixClient
) -> None:
    guest.ask_to_join(invite_token, "Gus")
    guest.wait_for("waiting")
    join_request_approve(JoinRequest.objects.get(display_name="Gus (Guest)"), moderator="@m:x")
    session = guest.wait_for("joined")["session"]
    user_id = session["userId"]

    with MatrixClient(
        base_url=session["homeserverUrl"], access_token=session["accessToken"]
    ) as own:
        own.set_displayname(user_id, "Demo Moderator")  # the lobby's token, as the guest
    wait_for(
        lambda: MembershipEvent.objects.filter(
            user_id=user_id, displayname="Demo Moderator"
        ).exists(),
        what="main's push of the new name",
        timeout=60,  # the guest server's event reaches main over federation, then is pushed
    )

    def named_as_a_guest_again() -> bool:
        member = main_bot.member(call_room.room_id, user_id)
        return member is not None and member.displayname == "Gus (Guest)"

    wait_for(named_as_a_guest_again, what="the guest's name restored on main", timeout=60)
