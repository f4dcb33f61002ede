"""Applying what main pushed: each event once, in order per room, failures retried and shown."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from rooms import membership
from rooms.membership import MAX_APPLY_ATTEMPTS, pushed_events_apply, pushed_events_failed
from rooms.models import CallRoom, JoinRequest, MembershipEvent
from tests.unit.conftest import MODERATOR, MakeRoom

pytestmark = pytest.mark.django_db

GUEST = "@guest_a:guest.test"
Status = JoinRequest.Status


@pytest.fixture
def waiting(room: CallRoom) -> JoinRequest:
    return JoinRequest.objects.create(
        public_id=uuid.uuid4(), room=room, user_id=GUEST, display_name="Ann", status=Status.WAITING
    )


def pushed(room: CallRoom, n: int, membership_: str, sender: str = MODERATOR) -> MembershipEvent:
    return MembershipEvent.objects.create(
        event_id=f"$e{n}:{room.room_id}",
        room_id=room.room_id,
        user_id=GUEST,
        sender=sender,
        membership=membership_,
        origin_server_ts=None,
    )


class FailingOnce:
    """join_requests_follow_membership that fails the first time it sees ``event_id``."""

    def __init__(self, event_id: str, times: int = 1) -> None:
        self.event_id, self.left = event_id, times
        self.real = membership.join_requests_follow_membership
        self.seen: list[str] = []

    def __call__(self, events: Any) -> None:
        for event in events:
            self.seen.append(event.event_id)
            if event.event_id == self.event_id and self.left:
                self.left -= 1
                raise RuntimeError("database hiccup")
        self.real(events)


def test_a_failure_is_recorded_and_the_next_run_applies_the_rooms_events_in_order(
    room: CallRoom, waiting: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    invite, kick = pushed(room, 1, "invite"), pushed(room, 2, "leave")
    follow = FailingOnce(invite.event_id)
    monkeypatch.setattr(membership, "join_requests_follow_membership", follow)

    assert pushed_events_apply() == 0
    invite.refresh_from_db()
    assert (invite.applied_at, invite.apply_attempts) == (None, 1)
    assert "database hiccup" in invite.apply_error
    assert follow.seen == [invite.event_id]  # the kick waited for the invite
    waiting.refresh_from_db()
    assert waiting.status == Status.WAITING

    assert pushed_events_apply() == 2
    assert follow.seen == [invite.event_id, invite.event_id, kick.event_id]
    waiting.refresh_from_db()
    assert waiting.status == Status.DENIED  # let in, then removed: in that order
    assert pushed_events_apply() == 0  # each event once


def test_another_rooms_events_do_not_wait_for_a_failing_room(
    room: CallRoom, make_room: MakeRoom, waiting: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_room(room_id="!Other")
    failing, elsewhere = pushed(room, 1, "invite"), pushed(other, 1, "knock", sender=GUEST)
    monkeypatch.setattr(
        membership, "join_requests_follow_membership", FailingOnce(failing.event_id)
    )

    assert pushed_events_apply() == 1
    elsewhere.refresh_from_db()
    assert elsewhere.applied_at is not None
    assert JoinRequest.objects.filter(room=other, user_id=GUEST, status=Status.WAITING).exists()


def test_an_event_that_keeps_failing_is_given_up_shown_and_no_longer_holds_up_its_room(
    client: Client, room: CallRoom, waiting: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, later = pushed(room, 1, "invite"), pushed(room, 2, "leave")
    monkeypatch.setattr(
        membership,
        "join_requests_follow_membership",
        FailingOnce(broken.event_id, times=MAX_APPLY_ATTEMPTS),
    )

    for _ in range(MAX_APPLY_ATTEMPTS):
        pushed_events_apply()

    assert pushed_events_failed() == 1
    assert pushed_events_apply() == 1  # the room's next event goes ahead
    later.refresh_from_db()
    assert later.applied_at is not None
    health = client.get("/healthz").json()["checks"]["appservice_pushes"]
    assert health["ok"] is False
    assert "could not be applied" in health["detail"]
    assert health["events_not_applied"] == 1
