"""What the main homeserver pushes to GuestGate's appservice endpoint, and following it.

Main's room state is the truth about a knock (DESIGN.md): GuestGate follows the room's
membership events, whoever made them (GuestGate's bot for a moderator, or anyone in a Matrix
client), and keeps each call room's name and power levels current.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from guestgate import homeservers
from matrix.appservice import RoomEvent
from rooms.joining import join_after_commit
from rooms.models import AppserviceTransaction, AuditEntry, CallRoom, JoinRequest, MembershipEvent
from rooms.provisioning import withdraw_knock_after_commit
from rooms.transitions import (
    By,
    audit_entry_record,
    join_request_banned,
    join_request_cancelled,
    join_request_denied,
    join_request_invited,
    join_request_joined,
    join_request_knocked,
)

logger = logging.getLogger(__name__)

Status = JoinRequest.Status

_MAX_TEXT = 1000  # a reason or display name longer than this is cut, not refused
_ROOM_STATE = ("m.room.power_levels", "m.room.name")


def appservice_transaction_receive(*, txn_id: str, events: Sequence[RoomEvent]) -> bool:
    """Record a pushed transaction and its membership events, once.

    Returns False, recording nothing, when ``txn_id`` was received before (a homeserver retry).
    Only inserts happen here, so the homeserver gets its answer fast.
    """
    members = [_membership_row(event) for event in events if event.membership is not None]
    room_state = [event for event in events if event.type in _ROOM_STATE and event.state_key == ""]
    try:
        with transaction.atomic():
            AppserviceTransaction.objects.create(txn_id=txn_id, event_count=len(events))
            # The same event can arrive in two transactions (e.g. after a homeserver restart).
            MembershipEvent.objects.bulk_create(members, ignore_conflicts=True)
            for event in room_state:
                _apply_room_state(event)
            transaction.on_commit(lambda: join_requests_follow_membership(members))
    except IntegrityError:
        logger.info("appservice transaction %s already received; ignored", txn_id)
        return False
    logger.info(
        "appservice transaction %s: %d events, %d membership", txn_id, len(events), len(members)
    )
    return True


def _apply_room_state(event: RoomEvent) -> None:
    """Keep a call room's name and power levels current: rights follow the room at once."""
    rooms = CallRoom.objects.filter(room_id=event.room_id)
    if event.type == "m.room.power_levels":
        rooms.update(power_levels=dict(event.content))
    elif event.type == "m.room.name":
        rooms.update(name=_text(event.content.get("name"))[:255])


def _membership_row(event: RoomEvent) -> MembershipEvent:
    content = event.content
    return MembershipEvent(
        event_id=event.event_id,
        room_id=event.room_id,
        user_id=event.state_key or "",
        sender=event.sender,
        membership=event.membership or "",
        prev_membership=event.prev_membership or "",
        reason=_text(content.get("reason")),
        displayname=_text(content.get("displayname"))[:255],
        origin_server_ts=event.origin_server_ts,
    )


def _text(value: object) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def join_requests_follow_membership(events: Sequence[MembershipEvent]) -> None:
    """Apply what the main homeserver says happened, whoever did it (GuestGate or Element).

    A kick there is a denial even though the guest homeserver never learns of it (MATRIX-LAB
    P7). Knocks by people with their own Matrix account become join requests too, so
    moderators see every knock.
    """
    for event in events:
        join_request = (
            JoinRequest.objects.select_related("room")
            .filter(room__room_id=event.room_id, user_id=event.user_id, status__in=JoinRequest.OPEN)
            .order_by("-created_at")
            .first()
        )
        if join_request is None:
            if event.membership == "knock":
                _knock_without_request(event)
            continue
        if not _older_than(event, join_request):
            _follow(join_request, event)


def _knock_without_request(knock: MembershipEvent) -> None:
    latest = (
        JoinRequest.objects.filter(room__room_id=knock.room_id, user_id=knock.user_id)
        .order_by("-created_at")
        .first()
    )
    if latest is not None and not _older_than(knock, latest):
        if latest.status in (Status.CANCELLED, Status.EXPIRED):
            # Landed on main after its request was cancelled (MATRIX-LAB P5: a knock can
            # arrive a moment after the call returned): kick it, so it does not linger.
            withdraw_knock_after_commit(latest)
            return
        if latest.guest_id is not None:
            return  # one of our guests' knocks, already accounted for
    call_room = CallRoom.objects.filter(room_id=knock.room_id).first()
    if call_room is None:
        return
    try:
        with transaction.atomic():
            join_request = JoinRequest.objects.create(
                public_id=uuid.uuid4(),
                room=call_room,
                user_id=knock.user_id,
                display_name=knock.displayname or knock.user_id,
                status=Status.WAITING,
                reason=knock.reason,
            )
            audit_entry_record(
                join_request,
                AuditEntry.Action.KNOCKED,
                actor=knock.user_id,
                reason=knock.reason,
                via=False,
            )
    except IntegrityError:
        pass  # the same knock, pushed twice at once


def _older_than(event: MembershipEvent, join_request: JoinRequest) -> bool:
    """An event from before this request (e.g. the kick that cleared an earlier knock)."""
    if event.origin_server_ts is None:
        return False
    return event.origin_server_ts < join_request.created_at.timestamp() * 1000 - 1000


def _by(event: MembershipEvent) -> By:
    """The audit entry's author: whoever acted in a Matrix client, or, for what GuestGate's bot
    did, the moderator recorded as deciding (their claim) with their reason."""
    if event.sender != homeservers.main_bot_user_id():
        return By(event.sender, event.reason, via_guestgate=False)
    return By(None, "" if event.membership == "invite" else event.reason)


def _follow(join_request: JoinRequest, event: MembershipEvent) -> None:
    sender = event.sender
    by = _by(event)
    match event.membership:
        case "knock":
            join_request_knocked(join_request)
        case "invite":
            with transaction.atomic():
                if join_request_invited(join_request, decider=sender, by=by):
                    join_after_commit(join_request)
        case "join":
            join_request_joined(join_request)
        case "leave" if sender == event.user_id:
            join_request_cancelled(join_request, via_guestgate=False)
        case "leave":
            join_request_denied(join_request, decider=sender, by=by, reason=event.reason)
        case "ban":
            join_request_banned(join_request, decider=sender, by=by, reason=event.reason)
