"""Following the call: which of GuestGate's guests are in a room's MatrixRTC call, per device.

Element Call (MatrixRTC, MSC3401/MSC4143) says who is in a room's call with state events of
type ``org.matrix.msc3401.call.member``, one per device (state key
``_<userId>_<deviceId>_m.call``; older clients ``<userId>_<deviceId>_m.call``, or the legacy
``<userId>`` whose content lists every device of the user). Content with an ``application``
means the device is in the call until ``expires`` (milliseconds after the event, or after its
``created_ts``); ``{}`` means it left. Main pushes these events; they are stored and applied
with the membership events (``rooms.membership``: durable, once each, in order per room) and
recorded here as one ``CallPresence`` per join request and device. Events may arrive late or
twice: for each device the newest event (by ``origin_server_ts``) wins, older ones change
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import LIVE_OR_FAILED
from guestgate import homeservers
from guestgate.retrying import run_retrying, send_after_commit
from matrix import CALL_MEMBER_EVENT, MatrixError
from matrix.appservice import RoomEvent
from rooms.models import AuditEntry, CallPresence, JoinRequest, MembershipEvent
from rooms.transitions import audit_entry_record, join_request_call_changed

logger = logging.getLogger(__name__)

_SUFFIX = "_m.call"
#: The one MatrixRTC application GuestGate follows: calls (not other RTC sessions of a room).
CALL_APPLICATION = "m.call"


@dataclass(frozen=True)
class CallDevice:
    """One device's place in the call, as an event says: in it until ``expires_ts`` (ms since
    1970; None: no end given), or not in it."""

    device_id: str
    in_call: bool
    expires_ts: int | None = None


@dataclass(frozen=True)
class CallMemberState:
    """What one call member event says about one user. ``every_device``: the legacy form,
    which lists all the user's devices in the call (those not listed are not in it)."""

    user_id: str
    devices: tuple[CallDevice, ...]
    every_device: bool = False


def call_member_key(state_key: str) -> tuple[str, str | None] | None:
    """The user id and device id a call member state key names (device None: the legacy
    per-user key), or None for a key of another shape.

    A user id's localpart has no ``:`` and its server name no ``_`` (hostname, IP literal and
    port), so the server name ends at the first ``_`` after the ``:``; a device id may hold
    anything, underscores included.
    """
    key = state_key.removeprefix("_")
    if not key.startswith("@") or ":" not in key:
        return None
    if not key.endswith(_SUFFIX):
        return (key, None) if "_" not in key.partition(":")[2] else None
    body = key.removesuffix(_SUFFIX)
    localpart, _, rest = body.partition(":")
    server, underscore, device_id = rest.partition("_")
    if len(localpart) < 2 or not server or not underscore or not device_id:
        return None
    return f"{localpart}:{server}", device_id


def call_member_state(event: RoomEvent) -> CallMemberState | None:
    """What a call member event says, or None if it is not one GuestGate can read."""
    if event.type != CALL_MEMBER_EVENT or event.state_key is None:
        return None
    named = call_member_key(event.state_key)
    if named is None:
        return None
    user_id, device_id = named
    content = event.content
    if device_id is not None:
        return CallMemberState(user_id, (_device(device_id, content, event.origin_server_ts),))
    memberships = content.get("memberships")
    if isinstance(memberships, list):  # the legacy list of every device of the user
        devices = tuple(
            _device(str(item["device_id"]), item, event.origin_server_ts)
            for item in memberships
            if isinstance(item, Mapping) and isinstance(item.get("device_id"), str)
        )
        return CallMemberState(user_id, devices, every_device=True)
    if isinstance(content.get("device_id"), str):  # a per-user key with one device's content
        return CallMemberState(
            user_id, (_device(content["device_id"], content, event.origin_server_ts),)
        )
    return CallMemberState(user_id, (), every_device=True)  # {}: the user left the call


def _device(device_id: str, content: Mapping[str, Any], origin_server_ts: int | None) -> CallDevice:
    if content.get("application") != CALL_APPLICATION:
        return CallDevice(device_id, in_call=False)
    return CallDevice(device_id, in_call=True, expires_ts=_expires_ts(content, origin_server_ts))


def _expires_ts(content: Mapping[str, Any], origin_server_ts: int | None) -> int | None:
    """When the membership ends by itself: ``expires`` is a duration from ``created_ts`` (or
    the event's own time), ``expires_ts`` (older clients) a moment."""
    absolute = _int(content.get("expires_ts"))
    if absolute is not None:
        return absolute
    expires = _int(content.get("expires"))
    start = _int(content.get("created_ts"))
    if start is None:
        start = origin_server_ts
    if expires is not None and start is not None:
        return start + expires
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_guest_user_id(user_id: str) -> bool:
    """Whether a user id is in GuestGate's namespace on the guest homeserver: the cheap test
    that keeps other people's call events out of GuestGate's tables."""
    return user_id.startswith(f"@{settings.GUEST_USER_PREFIX}") and user_id.endswith(
        f":{settings.GUEST_HS_SERVER_NAME}"
    )


def call_event_row(event: RoomEvent) -> MembershipEvent | None:
    """A pushed call member event as a row to store and apply, or None when it is not about
    one of GuestGate's guests (or not readable), which is dropped at once."""
    state = call_member_state(event)
    if state is None or not is_guest_user_id(state.user_id):
        return None
    if event.sender != state.user_id and any(d.in_call for d in state.devices):
        return None  # only the guest themselves can say they are in the call
    return MembershipEvent(
        event_id=event.event_id,
        room_id=event.room_id,
        type=CALL_MEMBER_EVENT,
        user_id=state.user_id,
        sender=event.sender,
        origin_server_ts=event.origin_server_ts,
        call_state={
            "devices": [
                {"device_id": d.device_id, "in_call": d.in_call, "expires_ts": d.expires_ts}
                for d in state.devices
            ],
            "every_device": state.every_device,
        },
    )


def call_presence_apply(event: MembershipEvent) -> None:
    """Record what a stored call member event says, on the guest's latest join request in the
    room (call inside the applier's transaction). A guest GuestGate does not know: nothing."""
    join_request = (
        JoinRequest.objects.select_for_update()
        .filter(room__room_id=event.room_id, user_id=event.user_id, guest__isnull=False)
        .order_by("-created_at")
        .first()
    )
    if join_request is None:
        return
    at_ms = event.origin_server_ts
    if at_ms is None:
        at_ms = int(event.received_at.timestamp() * 1000)
    devices = [
        CallDevice(str(d["device_id"]), bool(d["in_call"]), d.get("expires_ts"))
        for d in event.call_state.get("devices", [])
    ]
    if event.call_state.get("every_device"):
        listed = {d.device_id for d in devices}
        others = join_request.call_presences.exclude(device_id__in=listed)
        devices += [
            CallDevice(device_id, in_call=False)
            for device_id in others.values_list("device_id", flat=True)
        ]
    changed = [
        device.device_id
        for device in devices
        if _presence_follow(join_request, device, at_ms=at_ms, event_id=event.event_id)
    ]
    if changed:
        join_request_call_changed(join_request)


def _presence_follow(
    join_request: JoinRequest, device: CallDevice, *, at_ms: int, event_id: str
) -> bool:
    """Apply one device's news unless an event as new or newer was applied; True if applied."""
    presence, _ = CallPresence.objects.get_or_create(
        join_request=join_request, device_id=device.device_id
    )
    if presence.event_ts is not None and at_ms <= presence.event_ts:
        return False  # late or replayed: the newer event stands
    at = _moment(at_ms)
    expires_at = _moment(device.expires_ts) if device.expires_ts is not None else None
    was_in = presence.in_call_at(at)
    if device.in_call and (expires_at is None or expires_at > at):
        if not was_in:
            presence.joined_at, presence.left_at = at, None
        presence.expires_at = expires_at
    elif device.in_call:  # its membership had ended before it was sent: not in the call
        if was_in:
            presence.left_at = at
    elif was_in:
        presence.left_at = at
    elif presence.left_at is None and presence.expires_at is not None:
        presence.left_at = presence.expires_at  # it had run out: it left then
    presence.event_ts, presence.event_id = at_ms, event_id
    presence.save()
    return True


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def call_presences_close(join_request: JoinRequest, *, at: datetime | None = None) -> int:
    """The guest is out of the room (removed): none of their devices is in the call any more,
    though their call member events may linger on main. How many were closed."""
    at = at or timezone.now()
    return CallPresence.objects.filter(in_call_now(at), join_request=join_request).update(
        left_at=at
    )


#: How long Element Call's memberships last unless renewed: a removed guest's older than this
#: have run out on main by themselves, nothing is left to clear.
CALL_MEMBERSHIP_LIFETIME = timedelta(hours=4)


def call_members_clear_after_commit(join_request: JoinRequest) -> None:
    """The guest was removed: have the bot end their call memberships on main (a task)."""
    send_after_commit(clear_call_members, join_request.pk)


def join_request_call_members_clear(join_request: JoinRequest) -> list[str]:
    """End a removed guest's call memberships on main: GuestGate's bot overwrites each of the
    guest's call member state events that still says "in the call" with ``{}``, as the guest's
    own hang-up would, so Element Call clients stop listing a ghost after the kick. Then it is
    recorded (once, audited). Idempotent: keys already ``{}`` are left alone. The state keys
    it may overwrite are those of the ``_@user_DEVICE_m.call`` form (the room's power levels
    apply); a key that is a bare user id, or starts with one, belongs to that user alone
    (Matrix's auth rules) and runs out by itself. The state keys overwritten.

    Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4143
    """
    room_id = join_request.room.room_id
    cleared = []
    with homeservers.main_bot() as bot:
        for event in bot.state_events(room_id, CALL_MEMBER_EVENT):
            state_key = event.state_key or ""
            named = call_member_key(state_key)
            if named is None or named[0] != join_request.user_id or not event.content:
                continue
            if not state_key.startswith("_"):
                logger.warning("%s: %s is the guest's own key, left to run out", room_id, state_key)
                continue
            bot.set_state(room_id, CALL_MEMBER_EVENT, {}, state_key=state_key)
            cleared.append(state_key)
    _call_cleared_record(join_request, cleared=cleared)
    return cleared


def _call_cleared_record(join_request: JoinRequest, *, cleared: list[str], error: str = "") -> None:
    with transaction.atomic():
        if JoinRequest.objects.filter(pk=join_request.pk, call_cleared_at__isnull=True).update(
            call_cleared_at=timezone.now()
        ):
            reason = error or ", ".join(cleared)
            audit_entry_record(
                join_request,
                AuditEntry.Action.CALL_CLEARED,
                actor=homeservers.main_bot_user_id(),
                reason=reason,
            )


def call_members_clear_due(now: datetime) -> QuerySet[JoinRequest]:
    """Removed guests whose call memberships on main are still to be ended (stuck ones: the
    periodic re-send); those removed longer ago than a membership lasts have run out."""
    return JoinRequest.objects.filter(
        status=JoinRequest.Status.REMOVED,
        call_cleared_at__isnull=True,
        updated_at__gt=now - CALL_MEMBERSHIP_LIFETIME,
    )


@shared_task(bind=True, max_retries=8)
def clear_call_members(self: Task, join_request_id: int) -> None:
    join_request = (
        JoinRequest.objects.select_related("room")
        .filter(pk=join_request_id, status=JoinRequest.Status.REMOVED, call_cleared_at__isnull=True)
        .first()
    )
    if join_request is None:
        return

    def give_up(error: MatrixError) -> None:
        if not error.retryable:  # e.g. the bot lost its power: trying again changes nothing
            _call_cleared_record(join_request, cleared=[], error=f"not done: {error}")
        # else: left due, the periodic re-send tries again

    run_retrying(self, lambda: join_request_call_members_clear(join_request), on_give_up=give_up)


def in_call_now(now: datetime, prefix: str = "") -> Q:
    """Presences of a device in the call at ``now`` (``prefix``: the path to them)."""
    return Q(**{f"{prefix}joined_at__isnull": False, f"{prefix}left_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def guests_in_call_count(*, now: datetime | None = None) -> int:
    """Guests (let in, not removed) with at least one device in a call now."""
    now = now or timezone.now()
    return (
        JoinRequest.objects.filter(
            in_call_now(now, "call_presences__"), status=JoinRequest.Status.JOINED
        )
        .values("pk")
        .distinct()
        .count()
    )


def accounts_left_call_due(policy: RetentionPolicy, now: datetime) -> QuerySet[GuestAccount]:
    """The policy's live accounts whose guest left the call longer than its
    ``left_call_timeout`` ago and has no device in any call now (none if the option is off).

    A device whose membership ran out without a leave event left when it ran out.
    """
    if policy.left_call_timeout is None:
        return GuestAccount.objects.none()
    presences = "join_requests__call_presences__"
    return (
        GuestAccount.objects.filter(policy=policy, status__in=LIVE_OR_FAILED)
        .annotate(
            in_call=Count("join_requests__call_presences", filter=in_call_now(now, presences)),
            last_left=Max(Coalesce(f"{presences}left_at", f"{presences}expires_at")),
        )
        .filter(in_call=0, last_left__lt=now - policy.left_call_timeout)
    )
