"""Intake of what the main homeserver pushes to GuestGate's appservice endpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from matrix.appservice import RoomEvent
from rooms.join_requests import join_requests_follow_membership
from rooms.models import AppserviceTransaction, CallRoom, MembershipEvent

logger = logging.getLogger(__name__)

_MAX_TEXT = 1000
_ROOM_STATE = (
    "m.room.power_levels",
    "m.room.name",
)  # a reason or display name longer than this is cut, not refused


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
