"""What the main homeserver pushes to GuestGate's appservice endpoint, and following it.

Main's room state is the truth about a knock (DESIGN.md): GuestGate follows the room's
membership events, whoever made them (GuestGate's bot for a moderator, or anyone in a Matrix
client), and keeps each call room's name and power levels current. It also follows who of its
guests is in the room's call (``rooms.calls``): their call member events take the same path,
as do moderators' reactions to the waiting notice and their commands (``rooms.notices``); a
change of a room's queue refreshes that notice.

A push is stored first and answered at once; its membership events are then applied by a task,
each exactly once (by event id: transaction ids repeat after a restart of main on SQLite), in
the order received, retried on failure. Each event is applied and claimed in one transaction,
in order, so a second applier running at the same time waits for the first and never applies a
room's events out of order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from celery import Task, shared_task
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import GuestAccount
from accounts.services import LIVE
from guestgate import homeservers
from guestgate.retrying import run_retrying, send_after_commit
from matrix import CALL_MEMBER_EVENT, MatrixError
from matrix.appservice import RoomEvent
from rooms.call_rooms import ENCRYPTION_EVENT, encryption_on, recheck_call_room
from rooms.calls import (
    call_event_row,
    call_members_clear_after_commit,
    call_presence_apply,
    call_presences_close,
)
from rooms.joining import join_after_commit
from rooms.models import AppserviceTransaction, AuditEntry, CallRoom, JoinRequest, MembershipEvent
from rooms.notices import (
    MODERATOR_EVENTS,
    moderator_event_apply,
    moderator_event_rows,
    waiting_notice_soon,
)
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
    join_request_removed,
)

logger = logging.getLogger(__name__)

Status = JoinRequest.Status

_MAX_TEXT = 1000  # a reason or display name longer than this is cut, not refused
_ROOM_STATE = ("m.room.power_levels", "m.room.name", "m.room.join_rules", ENCRYPTION_EVENT)
#: Memberships that start or end a wait in a room's queue (rooms.notices follows it).
_QUEUE_CHANGES = ("knock", "invite", "leave", "ban")


def appservice_transaction_receive(*, txn_id: str, events: Sequence[RoomEvent]) -> None:
    """Record a pushed transaction and its membership events; a task applies them.

    Safe to repeat: an event already stored (a retried or replayed transaction) is not stored
    or applied again. Only inserts happen here, so the homeserver gets its answer fast.
    """
    members = [_membership_row(event) for event in events if event.membership is not None]
    members += [row for event in events if (row := call_event_row(event)) is not None]
    members += moderator_event_rows(events)  # reactions and commands for GuestGate
    room_state = [event for event in events if event.type in _ROOM_STATE and event.state_key == ""]
    with transaction.atomic():
        # Events first, then the log row: the order in which the rest of GuestGate (and a
        # TRUNCATE of the test database) takes these tables' locks, so none waits in a circle.
        MembershipEvent.objects.bulk_create(members, ignore_conflicts=True)
        AppserviceTransaction.objects.create(txn_id=txn_id, event_count=len(events))
        for event in room_state:
            _apply_room_state(event)
        if members:
            transaction.on_commit(_apply_soon)
    logger.info(
        "appservice transaction %s: %d events, %d membership", txn_id, len(events), len(members)
    )


#: Attempts at applying one event before it is left for an operator to see.
MAX_APPLY_ATTEMPTS = 5


def pushed_events_apply(*, limit: int = 1000) -> int:
    """Apply the stored membership events not applied yet, in the order received; how many
    were applied. An event that fails is retried by later runs; the room's later events wait
    for it until it is applied or has failed MAX_APPLY_ATTEMPTS times."""
    pending = (
        MembershipEvent.objects.filter(
            applied_at__isnull=True, apply_attempts__lt=MAX_APPLY_ATTEMPTS
        )
        .order_by("pk")
        .values_list("pk", "room_id")[:limit]
    )
    applied = 0
    held_back: set[str] = set()  # rooms with an event that failed in this run
    for pk, room_id in list(pending):
        if room_id in held_back:
            continue
        try:
            applied += _apply_one(pk)
        except Exception as error:  # any failure: recorded on the event, retried later
            logger.exception("pushed event %s could not be applied", pk)
            MembershipEvent.objects.filter(pk=pk).update(
                apply_attempts=F("apply_attempts") + 1, apply_error=repr(error)[:_MAX_TEXT]
            )
            held_back.add(room_id)
    return applied


def pushed_events_failed() -> int:
    """Membership events GuestGate gave up applying (for /healthz and /metrics)."""
    return MembershipEvent.objects.filter(
        applied_at__isnull=True, apply_attempts__gte=MAX_APPLY_ATTEMPTS
    ).count()


def _apply_one(pk: int) -> int:
    event = MembershipEvent.objects.filter(pk=pk, applied_at__isnull=True).first()
    if event is None:
        return 0
    _keep_guest_name(event)  # reads accounts: before the transaction, see below
    with transaction.atomic():
        # What the event says, then its claim, in one transaction: the join request's tables
        # are locked before the events' like everywhere else in GuestGate (no deadlock). An
        # applier that comes second waits for the first at the claim, then undoes its own.
        if event.type == MembershipEvent.MEMBER:
            join_requests_follow_membership([event])
            if event.membership in _QUEUE_CHANGES:
                waiting_notice_soon(event.room_id)
        elif event.type in MODERATOR_EVENTS:
            moderator_event_apply(event)
        else:
            call_presence_apply(event)
        if not MembershipEvent.objects.filter(pk=pk, applied_at__isnull=True).update(
            applied_at=timezone.now()
        ):
            transaction.set_rollback(True)
            return 0
    return 1


#: A membership change on main this much older than now that never reached GuestGate was lost.
PUSH_GRACE_SECONDS = 60


def call_room_memberships_reconcile(call_room: CallRoom, *, now: datetime | None = None) -> int:
    """Compare main's member and call member state of the room (the truth) with what main
    pushed; store the changes that never arrived, as if pushed, for the applier (the same
    rules: once by event id, the newest per device wins), and record the gap on the room. How
    many were missing. Changes from before GuestGate knew the room are not expected."""
    now = now or timezone.now()
    with homeservers.main_bot() as bot:
        members = bot.member_events(call_room.room_id)
        calls = bot.state_events(call_room.room_id, CALL_MEMBER_EVENT)
    rows = [_membership_row(event) for event in members]
    rows += [row for event in calls if (row := call_event_row(event)) is not None]
    known = set(
        MembershipEvent.objects.filter(event_id__in=[r.event_id for r in rows]).values_list(
            "event_id", flat=True
        )
    )
    since_ms = call_room.created_at.timestamp() * 1000
    until_ms = (now.timestamp() - PUSH_GRACE_SECONDS) * 1000
    missing = sorted(
        (
            row
            for row in rows
            if row.event_id not in known
            and row.origin_server_ts is not None
            and since_ms < row.origin_server_ts < until_ms
        ),
        key=lambda row: row.origin_server_ts or 0,
    )
    if not missing:
        return 0
    oldest_ms = missing[0].origin_server_ts or 0
    with transaction.atomic():
        MembershipEvent.objects.bulk_create(missing, ignore_conflicts=True)
        CallRoom.objects.filter(pk=call_room.pk).update(
            push_gap_at=now,
            push_gap_events=len(missing),
            push_gap_seconds=int(now.timestamp() - oldest_ms / 1000),
        )
        transaction.on_commit(_apply_soon)
    logger.warning(
        "room %s: %d membership or call change(s) main never pushed, taken from its state",
        call_room.room_id,
        len(missing),
    )
    return len(missing)


@shared_task
def reconcile_memberships() -> int:
    """Every minute: each ready call room's members and call members on main against what
    main pushed."""
    missing = 0
    for call_room in CallRoom.objects.filter(status=CallRoom.Status.READY):
        try:
            missing += call_room_memberships_reconcile(call_room)
        except MatrixError as error:  # main away: the next minute's run looks again
            logger.warning("room %s: members not compared: %s", call_room.room_id, error)
    return missing


def _apply_soon() -> None:
    try:
        apply_pushed_events.delay()
    except Exception:  # the broker is down: the minute's run applies them
        logger.exception("could not queue the application of pushed events")


@shared_task(bind=True, max_retries=None)
def apply_pushed_events(self: Task) -> None:
    """After each push, and every minute: apply what main pushed. Events that failed are
    tried again a little later (up to MAX_APPLY_ATTEMPTS)."""
    pushed_events_apply()
    retrying = MembershipEvent.objects.filter(
        applied_at__isnull=True, apply_attempts__gt=0, apply_attempts__lt=MAX_APPLY_ATTEMPTS
    ).exists()
    if retrying and self.request.retries < MAX_APPLY_ATTEMPTS:
        raise self.retry(countdown=2.0**self.request.retries)


def _apply_room_state(event: RoomEvent) -> None:
    """Keep a call room's name, power levels and encryption current: rights follow the room at
    once, and the next lobby of an encrypted room is ready for it. A change of its power levels
    or join rule may make it ready or not: it is checked again."""
    rooms = CallRoom.objects.filter(room_id=event.room_id)
    if event.type == "m.room.power_levels":
        rooms.update(power_levels=dict(event.content))
    elif event.type == "m.room.name":
        rooms.update(name=_text(event.content.get("name"))[:255])
    elif event.type == ENCRYPTION_EVENT and encryption_on(event.content):
        rooms.update(encrypted=True)  # clients never turn it off again (the spec's advice)
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        for pk in rooms.values_list("pk", flat=True):
            send_after_commit(recheck_call_room, pk)


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
            elif event.membership in ("leave", "ban") and event.sender != event.user_id:
                _removed_in_a_matrix_client(event)
            continue
        if not _older_than(event, join_request):
            _follow(join_request, event)


def _keep_guest_name(event: MembershipEvent) -> None:
    """A guest holds their own access token (the lobby hands it over) and could rename
    themselves, dropping the guest suffix or copying a moderator's name; main shows every
    member the new name. GuestGate puts the name it gave them back."""
    if event.type != MembershipEvent.MEMBER:
        return
    if event.membership != "join" or event.sender != event.user_id:
        return
    account = GuestAccount.objects.filter(user_id=event.user_id, status__in=LIVE).first()
    if account is not None and event.displayname != account.display_name:
        logger.warning("guest %s renamed themselves in %s; restoring", event.user_id, event.room_id)
        send_after_commit(restore_guest_name, account.pk, event.room_id)


def guest_name_restore(account: GuestAccount, room_id: str) -> None:
    """Set the guest's name back, on their profile and in the room (idempotent)."""
    with homeservers.guest_appservice() as appservice:
        guest = appservice.as_user(account.user_id)
        guest.set_displayname(account.user_id, account.display_name)
        member = {"membership": "join", "displayname": account.display_name}
        guest.set_state(room_id, "m.room.member", member, state_key=account.user_id)


@shared_task(bind=True, max_retries=8)
def restore_guest_name(self: Task, account_id: int, room_id: str) -> None:
    account = GuestAccount.objects.filter(pk=account_id, status__in=LIVE).first()
    if account is None:
        return
    run_retrying(
        self,
        lambda: guest_name_restore(account, room_id),
        on_give_up=lambda error: logger.error("guest %s keeps a name not theirs", account),
    )


def _removed_in_a_matrix_client(event: MembershipEvent) -> None:
    """A let-in guest kicked or banned on main by a moderator in a Matrix client: removed from
    the call, as with GuestGate's button. (The kick of GuestGate's bot is that button's:
    ``rooms.moderation`` records it with the moderator's name.)"""
    if event.sender == homeservers.main_bot_user_id():
        return
    join_request = (
        JoinRequest.objects.filter(room__room_id=event.room_id, user_id=event.user_id)
        .order_by("-created_at")
        .first()
    )
    if join_request is None or join_request.status != Status.JOINED:
        return
    if _older_than(event, join_request):
        return
    by = By(event.sender, event.reason, via_guestgate=False)
    if join_request_removed(join_request, by=by, reason=event.reason):
        call_presences_close(join_request)
        call_members_clear_after_commit(join_request)


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
