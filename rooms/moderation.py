"""Moderators' decisions on join requests: approve (invite), deny (kick), deny and ban (ban).

Record, act, record: a decision is first claimed on the row (a conditional UPDATE of
``decided_by``), so two moderators clicking at once cause one effect and the other is told
who decided; then GuestGate's bot acts on the main homeserver; then the new state and the
audit entry are stored. A homeserver failure releases the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.utils.translation import gettext

from guestgate import homeservers
from guestgate.errors import GuestGateError
from matrix import MatrixError
from rooms.join_requests import enqueue_after_commit, move_join_request
from rooms.models import AuditEntry, CallRoom, JoinRequest

Status = JoinRequest.Status
DECIDABLE = (Status.PROVISIONING, Status.WAITING)


class AlreadyDecided(GuestGateError):
    code = "request.already_decided"
    status = 409


class NotAllowed(GuestGateError):
    code = "moderation.not_allowed"
    status = 403


def _claim(join_request: JoinRequest, moderator: str) -> None:
    claimed = JoinRequest.objects.filter(
        pk=join_request.pk, decided_by="", status__in=DECIDABLE
    ).update(decided_by=moderator)
    if claimed != 1:
        join_request.refresh_from_db()
        raise AlreadyDecided(
            gettext("%(name)s was already handled by %(who)s (%(status)s).")
            % {
                "name": join_request.display_name,
                "who": join_request.decided_by or gettext("someone else"),
                "status": join_request.get_status_display(),
            }
        )
    join_request.decided_by = moderator


def _release(join_request: JoinRequest, moderator: str) -> None:
    JoinRequest.objects.filter(
        pk=join_request.pk, decided_by=moderator, status__in=DECIDABLE
    ).update(decided_by="")


def _audit(join_request: JoinRequest, action: str, moderator: str, reason: str = "") -> None:
    AuditEntry.objects.create(
        room_id=join_request.room_id,
        join_request=join_request,
        action=action,
        actor=moderator,
        subject=join_request.user_id,
        subject_name=join_request.display_name,
        reason=reason,
    )


def join_request_approve(join_request: JoinRequest, *, moderator: str) -> None:
    """Let the person in: GuestGate's bot invites them, naming who decided."""
    _claim(join_request, moderator)
    try:
        join_request_invite_claimed(join_request, moderator=moderator)
    except MatrixError:
        _release(join_request, moderator)
        raise


def join_request_invite_claimed(
    join_request: JoinRequest, *, moderator: str, queue_join: bool = True
) -> None:
    """The act and record halves of an approval already claimed by ``moderator``.

    ``queue_join=False``: the caller joins the guest itself (see rooms.tasks.approve_claimed).
    """
    with homeservers.main_bot() as bot:
        bot.ensure_invited(
            join_request.room.room_id, join_request.user_id, reason=f"approved by {moderator}"
        )
    with transaction.atomic():
        _audit(join_request, AuditEntry.Action.APPROVED, moderator)
        if (
            move_join_request(join_request, from_=DECIDABLE, to=Status.INVITED)
            and join_request.guest_id
            and queue_join
        ):
            enqueue_after_commit("join_guest", join_request.pk)


def join_request_deny(
    join_request: JoinRequest, *, moderator: str, reason: str = "", ban: bool = False
) -> None:
    """Turn the person away; the reason reaches a guest's lobby. ``ban`` stops new knocks."""
    _claim(join_request, moderator)
    try:
        with homeservers.main_bot() as bot:
            act = bot.ensure_banned if ban else bot.ensure_kicked
            act(join_request.room.room_id, join_request.user_id, reason=reason or None)
    except MatrixError:
        _release(join_request, moderator)
        raise
    action = AuditEntry.Action.BANNED if ban else AuditEntry.Action.DENIED
    with transaction.atomic():
        _audit(join_request, action, moderator, reason)
        move_join_request(
            join_request, from_=DECIDABLE, to=Status.BANNED if ban else Status.DENIED, reason=reason
        )


@dataclass(frozen=True)
class ApproveAllResult:
    approved: int  # claimed now; the worker invites them, several at once
    skipped: int  # decided by someone else meanwhile
    failed: int  # always 0 here: an invite that fails later goes back to the queue


def join_requests_approve_all(room: CallRoom, *, moderator: str) -> ApproveAllResult:
    """Claim everyone waiting in one transaction and let the worker invite them in parallel:
    500 invites one after another took 98 s inside one web request (make bench)."""
    waiting = list(
        JoinRequest.objects.filter(room=room, status=Status.WAITING)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    claimed = []
    with transaction.atomic():
        for pk in waiting:
            if JoinRequest.objects.filter(pk=pk, status__in=DECIDABLE, decided_by="").update(
                decided_by=moderator
            ):
                claimed.append(pk)
        for pk in claimed:
            transaction.on_commit(partial(_enqueue_approval, pk, moderator))
    return ApproveAllResult(approved=len(claimed), skipped=len(waiting) - len(claimed), failed=0)


def _enqueue_approval(join_request_id: int, moderator: str) -> None:
    from rooms.tasks import approve_claimed  # tasks call these services

    approve_claimed.delay(join_request_id, moderator)


def join_request_release(join_request: JoinRequest, *, moderator: str) -> None:
    """Give a claimed request back to the queue (its invite could not be sent)."""
    _release(join_request, moderator)
