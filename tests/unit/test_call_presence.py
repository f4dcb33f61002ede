"""Reading call member events (state keys, contents) and following them per device, without a
homeserver: the edge cases. The flow runs on the real pair in
tests/integration/test_call_presence.py."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from matrix import CALL_MEMBER_EVENT
from matrix.appservice import RoomEvent
from ops.metrics import metrics_exposition
from rooms import membership
from rooms.calls import (
    CallDevice,
    accounts_left_call_due,
    call_event_row,
    call_member_key,
    call_member_state,
    guests_in_call_count,
)
from rooms.membership import appservice_transaction_receive, pushed_events_apply
from rooms.models import (
    AuditEntry,
    CallPresence,
    CallRoom,
    CallStatus,
    JoinRequest,
    MembershipEvent,
)
from rooms.selectors import lobby_state
from rooms.transitions import By, join_request_removed

GUEST = f"@{settings.GUEST_USER_PREFIX}ann_1:{settings.GUEST_HS_SERVER_NAME}"
CALL = {"application": "m.call", "device_id": "DEV", "membershipID": "m1", "expires": 14_400_000}


@pytest.mark.parametrize(
    ("state_key", "named"),
    [
        (f"_{GUEST}_DEV_m.call", (GUEST, "DEV")),
        (f"{GUEST}_DEV_m.call", (GUEST, "DEV")),
        (f"_{GUEST}_DEV_WITH_UNDERSCORES_m.call", (GUEST, "DEV_WITH_UNDERSCORES")),
        ("_@guest_x:[::1]:8448_D_m.call", ("@guest_x:[::1]:8448", "D")),
        (GUEST, (GUEST, None)),  # legacy: the whole user
        ("", None),
        ("_m.call", None),
        (f"_{GUEST}_m.call", None),  # no device
        (f"_{GUEST}__m.call", None),  # an empty device
        ("_@:server_D_m.call", None),  # no localpart
        ("_guest:server_D_m.call", None),  # not a user id
        ("@nocolon_D_m.call", None),
        (f"{GUEST}_D_m.cal", None),  # another suffix, and not a bare user id
    ],
)
def test_a_call_member_state_key_names_a_user_and_device(
    state_key: str, named: tuple[str, str | None] | None
) -> None:
    assert call_member_key(state_key) == named


def event(
    content: dict[str, Any],
    *,
    state_key: str = f"_{GUEST}_DEV_m.call",
    sender: str = GUEST,
    ts: int = 1_000_000,
    event_id: str | None = None,
    room_id: str = "!AbCdEf123",
) -> RoomEvent:
    return RoomEvent(
        event_id=event_id or f"${uuid.uuid4().hex}",
        room_id=room_id,
        type=CALL_MEMBER_EVENT,
        sender=sender,
        state_key=state_key,
        content=content,
        origin_server_ts=ts,
    )


def test_a_device_in_the_call_until_its_membership_expires() -> None:
    state = call_member_state(event(CALL, ts=1_000))
    assert state is not None
    assert state.devices == (CallDevice("DEV", in_call=True, expires_ts=1_000 + 14_400_000),)


def test_expires_counts_from_created_ts_and_expires_ts_is_a_moment() -> None:
    created = call_member_state(event({**CALL, "created_ts": 500}, ts=9_000))
    absolute = call_member_state(event({"application": "m.call", "expires_ts": 7}))
    assert created is not None and created.devices[0].expires_ts == 500 + 14_400_000
    assert absolute is not None and absolute.devices[0].expires_ts == 7


@pytest.mark.parametrize(
    "content", [{}, {"device_id": "DEV"}, {"application": "m.other", "device_id": "DEV"}]
)
def test_empty_content_or_another_application_means_the_device_left(
    content: dict[str, Any],
) -> None:
    state = call_member_state(event(content))
    assert state is not None and state.devices == (CallDevice("DEV", in_call=False),)


def test_the_legacy_per_user_event_lists_every_device() -> None:
    legacy = {"memberships": [{**CALL, "device_id": "A"}, {**CALL, "device_id": "B"}]}
    state = call_member_state(event(legacy, state_key=GUEST, ts=0))
    assert state is not None and state.every_device
    assert [d.device_id for d in state.devices] == ["A", "B"]
    left = call_member_state(event({}, state_key=GUEST))
    assert left is not None and left.every_device and left.devices == ()


def test_call_events_of_people_who_are_not_guests_are_dropped_at_once() -> None:
    member = "@mona:main.test"
    assert call_event_row(event(CALL, state_key=f"_{member}_D_m.call", sender=member)) is None
    assert call_event_row(event(CALL, state_key="not a key")) is None


def test_only_the_guest_can_say_they_are_in_the_call_but_anyone_can_clear_it() -> None:
    assert call_event_row(event(CALL, sender="@mona:main.test")) is None
    assert call_event_row(event({}, sender="@mona:main.test")) is not None


# Following pushed events, through the same store-then-apply path as membership events.


@pytest.fixture
def let_in(room: CallRoom) -> JoinRequest:
    policy = RetentionPolicy.objects.get(is_default=True)
    account = GuestAccount.objects.create(
        localpart=GUEST[1:].split(":")[0],
        user_id=GUEST,
        display_name="Ann (Guest)",
        status=GuestAccount.Status.ACTIVE,
        policy=policy,
    )
    return JoinRequest.objects.create(
        public_id=uuid.uuid4(),
        room=room,
        guest=account,
        user_id=GUEST,
        display_name="Ann (Guest)",
        status=JoinRequest.Status.JOINED,
    )


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def about(moment: datetime | None, expected: datetime) -> bool:
    """The same moment, to the millisecond events carry."""
    return moment is not None and abs(moment - expected) < timedelta(milliseconds=1)


def push(*events: RoomEvent) -> None:
    appservice_transaction_receive(txn_id=uuid.uuid4().hex, events=events)
    pushed_events_apply()


def call_of(join_request: JoinRequest) -> CallStatus:
    return JoinRequest.objects.get(pk=join_request.pk).call


@pytest.mark.django_db
def test_a_guest_joins_and_leaves_the_call(let_in: JoinRequest) -> None:
    joined, left = timezone.now() - timedelta(minutes=5), timezone.now() - timedelta(minutes=3)
    version = let_in.version

    push(event(CALL, ts=ms(joined)))
    status = call_of(let_in)
    assert status.state == CallStatus.IN_CALL and about(status.since, joined)
    assert guests_in_call_count() == 1
    assert "guestgate_guests_in_call 1.0" in metrics_exposition("")[0].decode()
    push(event({}, ts=ms(left)))

    status = call_of(let_in)
    assert status.state == CallStatus.LEFT and about(status.since, left)
    assert guests_in_call_count() == 0
    assert JoinRequest.objects.get(pk=let_in.pk).version == version + 2  # dashboards woke


@pytest.mark.django_db
def test_a_late_or_replayed_event_changes_nothing(let_in: JoinRequest) -> None:
    now = timezone.now()
    join = event(CALL, ts=ms(now - timedelta(minutes=2)), event_id="$join")
    leave = event({}, ts=ms(now - timedelta(minutes=1)), event_id="$leave")
    push(join, leave)
    before = list(CallPresence.objects.values())

    push(join)  # replayed: the same event id is not stored again
    push(event(CALL, ts=ms(now - timedelta(minutes=3))))  # an older join arriving late

    assert list(CallPresence.objects.values()) == before
    assert call_of(let_in).state == CallStatus.LEFT


@pytest.mark.django_db
def test_a_membership_that_expired_is_not_in_the_call(let_in: JoinRequest) -> None:
    long_ago = timezone.now() - timedelta(hours=5)
    push(event(CALL, ts=ms(long_ago)))  # expires after 4 h, so an hour ago

    status = call_of(let_in)
    assert status.state == CallStatus.LEFT
    assert status.since is not None and status.since < timezone.now() - timedelta(minutes=59)
    assert guests_in_call_count() == 0


@pytest.mark.django_db
def test_call_events_of_unknown_guests_are_applied_as_nothing(room: CallRoom) -> None:
    push(event(CALL))
    assert CallPresence.objects.count() == 0
    assert MembershipEvent.objects.get().applied_at is not None


@pytest.mark.django_db
def test_the_legacy_event_ends_the_devices_it_no_longer_lists(let_in: JoinRequest) -> None:
    now = timezone.now()
    two = {"memberships": [{**CALL, "device_id": "A"}, {**CALL, "device_id": "B"}]}
    push(event(two, state_key=GUEST, ts=ms(now - timedelta(minutes=2))))
    push(event({"memberships": [{**CALL, "device_id": "B"}]}, state_key=GUEST, ts=ms(now)))

    in_call = {p.device_id: p.in_call_at(timezone.now()) for p in CallPresence.objects.all()}
    assert in_call == {"A": False, "B": True}


@pytest.mark.django_db
def test_left_call_retention_is_off_by_default_and_waits_for_every_device(
    let_in: JoinRequest,
) -> None:
    policy = RetentionPolicy.objects.get(is_default=True)
    now = timezone.now()
    push(event(CALL, ts=ms(now - timedelta(minutes=30))))
    push(event({}, ts=ms(now - timedelta(minutes=20))))
    assert not accounts_left_call_due(policy, now).exists()  # off

    policy.left_call_timeout = timedelta(minutes=10)
    policy.save()
    assert list(accounts_left_call_due(policy, now)) == [let_in.guest]

    push(event(CALL, state_key=f"_{GUEST}_OTHER_m.call", ts=ms(now - timedelta(minutes=1))))
    assert not accounts_left_call_due(policy, now).exists()  # back in the call


@pytest.mark.django_db
def test_a_guest_removed_from_the_call_is_told_and_loses_the_call(let_in: JoinRequest) -> None:
    assert join_request_removed(
        let_in, by=By("@mona:main.test", "Wrong meeting"), reason="Wrong meeting"
    )
    assert not join_request_removed(let_in, by=By("@mona:main.test"))  # once

    state = lobby_state(JoinRequest.objects.select_related("room", "guest").get(pk=let_in.pk))
    assert (state["status"], state["title"], state["reason"]) == (
        "removed",
        "You were removed from the call",
        "Wrong meeting",
    )
    assert state["session"] is None and state["call_url"] is None
    assert AuditEntry.objects.filter(action=AuditEntry.Action.REMOVED).count() == 1


@pytest.mark.django_db
def test_a_call_event_that_fails_to_apply_is_kept_and_applied_by_the_next_run(
    let_in: JoinRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = membership.call_presence_apply

    def failing(event: MembershipEvent) -> None:
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(membership, "call_presence_apply", failing)
    push(event(CALL, ts=ms(timezone.now())))
    stored = MembershipEvent.objects.get()
    assert (stored.applied_at, stored.apply_attempts) == (None, 1)
    assert call_of(let_in).state == CallStatus.NOT_JOINED

    monkeypatch.setattr(membership, "call_presence_apply", real)
    assert pushed_events_apply() == 1
    assert call_of(let_in).state == CallStatus.IN_CALL
