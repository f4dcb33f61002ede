"""Moderators' decisions on join requests: approve (invite), deny (kick), deny and ban (ban),
undoing a ban for a short while (unban), and removing a let-in guest from the call (kick).

Record, act, record: a decision is first claimed on the row (a conditional UPDATE of
``decided_by``), so two moderators clicking at once cause one effect and the other is told
who decided; then GuestGate's bot acts on the main homeserver; then the transition is recorded
with its audit entry (``rooms.transitions``; main's push of the same change may record it
first, for the moderator who claimed it). A homeserver failure releases the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from celery import Task, shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from guestgate import homeservers
from guestgate.errors import GuestGateError
from guestgate.retrying import run_retrying, send_after_commit
from matrix import MatrixError
from rooms.calls import call_members_clear_after_commit, call_presences_close
from rooms.guest_steps import guest_step_run, join_request_load
from rooms.joining import join_after_commit, join_request_join
from rooms.models import CallRoom, JoinRequest
from rooms.transitions import (
    DECIDABLE,
    By,
    join_request_ban_undone,
    join_request_banned,
    join_request_denied,
    join_request_invited,
    join_request_removed,
)

Status = JoinRequest.Status


class AlreadyDecided(GuestGateError):
    code = "request.already_decided"
    status = 409


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


def join_request_release(join_request: JoinRequest, *, moderator: str) -> None:
    """Give a claimed request back to the queue (its invite could not be sent)."""
    JoinRequest.objects.filter(
        pk=join_request.pk, decided_by=moderator, status__in=DECIDABLE
    ).update(decided_by="", decided_in_matrix=False)


def join_request_approve(join_request: JoinRequest, *, moderator: str) -> None:
    """Let the person in: GuestGate's bot invites them, naming who decided."""
    _claim(join_request, moderator)
    try:
        join_request_invite_claimed(join_request, moderator=moderator)
    except MatrixError:
        join_request_release(join_request, moderator=moderator)
        raise


def join_request_invite_claimed(
    join_request: JoinRequest,
    *,
    moderator: str,
    queue_join: bool = True,
    via_guestgate: bool = True,
) -> None:
    """The act and record halves of an approval already claimed by ``moderator``.

    ``queue_join=False``: the caller joins the guest itself (see ``approve_claimed``).
    ``via_guestgate=False``: decided in a Matrix client (rooms.notices), so the audit says.
    """
    with homeservers.main_bot() as bot:
        bot.ensure_invited(
            join_request.room.room_id, join_request.user_id, reason=f"approved by {moderator}"
        )
    with transaction.atomic():
        by = By(moderator, via_guestgate=via_guestgate)
        invited = join_request_invited(join_request, decider=moderator, by=by)
        if invited and queue_join:
            join_after_commit(join_request)


def join_request_deny(
    join_request: JoinRequest,
    *,
    moderator: str,
    reason: str = "",
    ban: bool = False,
    via_guestgate: bool = True,
) -> None:
    """Turn the person away; the reason reaches a guest's lobby. ``ban`` stops new knocks.
    ``via_guestgate=False``: decided in a Matrix client (rooms.notices)."""
    _claim(join_request, moderator)
    try:
        with homeservers.main_bot() as bot:
            act = bot.ensure_banned if ban else bot.ensure_kicked
            act(join_request.room.room_id, join_request.user_id, reason=reason or None)
    except MatrixError:
        join_request_release(join_request, moderator=moderator)
        raise
    record = join_request_banned if ban else join_request_denied
    by = By(moderator, reason, via_guestgate=via_guestgate)
    record(join_request, decider=moderator, by=by, reason=reason)


#: How long after a ban the dashboard offers to undo it.
BAN_UNDO_WINDOW = timedelta(seconds=30)


class TooLateToUndo(GuestGateError):
    code = "request.ban_undo_too_late"
    status = 409


def join_request_ban_undo_possible(join_request: JoinRequest) -> bool:
    """Whether the request's ban is recent enough to undo. A banned request changes no more,
    so its ``updated_at`` is when it was banned."""
    return (
        join_request.status == Status.BANNED
        and join_request.updated_at >= timezone.now() - BAN_UNDO_WINDOW
    )


def join_requests_ban_undoable(room: CallRoom) -> list[JoinRequest]:
    """The room's requests banned moments ago, newest first: the dashboard offers an undo."""
    return list(
        JoinRequest.objects.filter(
            room=room,
            status=Status.BANNED,
            updated_at__gte=timezone.now() - BAN_UNDO_WINDOW,
        ).order_by("-updated_at")
    )


def join_request_ban_undo(join_request: JoinRequest, *, moderator: str) -> None:
    """Take back a ban made less than ``BAN_UNDO_WINDOW`` ago: GuestGate's bot lifts it on main,
    then the request is recorded as denied (not banned), audited once as the undo by
    ``moderator``. Main's push of the unban changes nothing more (rooms.membership). A ban
    lifted on main but not recorded (the process died) is recorded by undoing again."""
    join_request.refresh_from_db()
    if not join_request_ban_undo_possible(join_request):
        raise TooLateToUndo(
            gettext(
                "Too late to undo: %(name)s stays banned. A moderator can lift the ban in a "
                "Matrix client."
            )
            % {"name": join_request.display_name}
            if join_request.status == Status.BANNED
            else gettext("%(name)s is not banned (%(status)s).")
            % {"name": join_request.display_name, "status": join_request.get_status_display()}
        )
    with homeservers.main_bot() as bot:
        bot.ensure_unbanned(
            join_request.room.room_id, join_request.user_id, reason=f"ban undone by {moderator}"
        )
    if not join_request_ban_undone(join_request, by=By(moderator)):
        join_request.refresh_from_db()
        raise AlreadyDecided(
            gettext("%(name)s's ban was already undone (%(status)s).")
            % {"name": join_request.display_name, "status": join_request.get_status_display()}
        )


class NotInTheRoom(GuestGateError):
    code = "request.not_joined"
    status = 409


def join_request_remove_from_call(
    join_request: JoinRequest, *, moderator: str, reason: str = ""
) -> None:
    """Take a let-in guest out of the call: GuestGate's bot kicks them from the room on main
    with the moderator's reason, then the removal is recorded (audited once; the lobby says
    so and ends the call on the guest's screen). Main's push of the bot's kick adds nothing.
    A kick that succeeded but was not recorded (the process died) leaves the request "in the
    call" while the guest is out; removing again kicks nothing and records it. Then the bot
    ends the guest's call memberships on main (``rooms.calls``, a task), so that no client
    lists them in the call until they run out."""
    if join_request.status != Status.JOINED:
        raise NotInTheRoom(
            gettext("%(name)s is not in the call room (%(status)s).")
            % {"name": join_request.display_name, "status": join_request.get_status_display()}
        )
    with homeservers.main_bot() as bot:
        bot.ensure_kicked(join_request.room.room_id, join_request.user_id, reason=reason or None)
    with transaction.atomic():
        if join_request_removed(join_request, by=By(moderator, reason), reason=reason):
            call_presences_close(join_request)
            call_members_clear_after_commit(join_request)


@dataclass(frozen=True)
class ApproveAllResult:
    approved: int  # claimed now; the worker invites them, several at once
    skipped: int  # decided by someone else meanwhile


def join_requests_approve_all(room: CallRoom, *, moderator: str) -> ApproveAllResult:
    """Claim everyone waiting in one transaction and let the worker invite them in parallel
    (one web request inviting a crowd one after another would outlast any proxy's timeout)."""
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
            send_after_commit(approve_claimed, pk, moderator)
    return ApproveAllResult(approved=len(claimed), skipped=len(waiting) - len(claimed))


@shared_task(bind=True, max_retries=8)
def approve_claimed(
    self: Task, join_request_id: int, moderator: str, via_guestgate: bool = True
) -> None:
    """One guest of "let everyone in" (claimed when the moderator clicked, or reacted in
    Matrix: ``via_guestgate=False``): the invite, then the guest's join in the same task, so
    that no guest's join waits behind every invite."""
    join_request = join_request_load(join_request_id)
    if join_request is None or join_request.decided_by != moderator:
        return
    if join_request.status in DECIDABLE:  # not invited yet (or a retry)
        run_retrying(
            self,
            lambda: join_request_invite_claimed(
                join_request, moderator=moderator, queue_join=False, via_guestgate=via_guestgate
            ),
            on_give_up=lambda error: join_request_release(join_request, moderator=moderator),
        )
    guest_step_run(self, join_request_id, join_request_join)  # only if invited now
