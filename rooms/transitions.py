"""Every change of a join request's status, one function per transition, and the audit log.

Each transition is a conditional UPDATE on the states it leaves, which also bumps ``version``
(the lobby long-polls on it): a count other than 1 means someone else (a moderator's click, a
homeserver push, another worker) got there first, and nothing happened. The audit entry is
written in the same transaction, only when the change happened. Nothing else in GuestGate
sets a join request's status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from rooms.live import changes
from rooms.models import AuditEntry, JoinRequest

Status = JoinRequest.Status
DECIDABLE = (Status.PROVISIONING, Status.WAITING)
#: The actor of what GuestGate does by itself (a failure, an expiry).
GUESTGATE = "GuestGate"


@dataclass(frozen=True)
class By:
    """Who made a change, for the audit log. ``who=None``: the person recorded as deciding
    (``decided_by``), e.g. when main pushes what GuestGate's bot did for a moderator."""

    who: str | None
    reason: str = ""
    via_guestgate: bool = True


def audit_entry_record(
    join_request: JoinRequest, action: str, *, actor: str, reason: str = "", via: bool = True
) -> AuditEntry:
    """The one way an audit entry is written (call inside the change's transaction)."""
    return AuditEntry.objects.create(
        room_id=join_request.room_id,
        join_request=join_request,
        action=action,
        actor=actor,
        subject=join_request.user_id,
        subject_name=join_request.display_name,
        reason=reason,
        via_guestgate=via,
    )


def _move(
    join_request: JoinRequest,
    *,
    from_: Iterable[str],
    to: str,
    action: str | None = None,
    by: By | None = None,
    **fields: object,
) -> bool:
    """Change the status if it is one of ``from_``; True if this call made the change."""
    with transaction.atomic():
        changed = JoinRequest.objects.filter(pk=join_request.pk, status__in=list(from_)).update(
            status=to, version=F("version") + 1, updated_at=timezone.now(), **fields
        )
        if changed != 1:
            return False
        changes.poke_after_commit()  # this process's long polls hear of it at once
        if action is not None and by is not None:
            decided_by, in_matrix = JoinRequest.objects.values_list(
                "decided_by", "decided_in_matrix"
            ).get(pk=join_request.pk)
            actor = decided_by if by.who is None else by.who
            # The decider's claim says where they decided (rooms.notices claims from Matrix).
            via = by.via_guestgate and not (in_matrix and actor == decided_by)
            if actor:
                audit_entry_record(join_request, action, actor=actor, reason=by.reason, via=via)
    return True


def _first_decider(decider: str) -> Case:
    """``decider`` unless someone is recorded as deciding already (a moderator's claim)."""
    return Case(When(decided_by="", then=Value(decider)), default=F("decided_by"))


def _decision(decider: str | None) -> dict[str, object]:
    return {} if decider is None else {"decided_by": _first_decider(decider)}


def join_request_knocked(join_request: JoinRequest) -> bool:
    """The guest's knock is on main: the moderators' turn."""
    return _move(
        join_request,
        from_=[Status.PROVISIONING],
        to=Status.WAITING,
        action=AuditEntry.Action.KNOCKED,
        by=By(join_request.user_id),
    )


def join_request_invited(join_request: JoinRequest, *, decider: str | None, by: By | None) -> bool:
    """Main shows an invite: the person is let in. ``decider``: who invited on Matrix (kept
    unless a moderator's claim is recorded); ``by``: the audit entry's author, None when the
    approval is on record already."""
    return _move(
        join_request,
        from_=DECIDABLE,
        to=Status.INVITED,
        action=AuditEntry.Action.APPROVED,
        by=by,
        **_decision(decider),
    )


def join_request_joining(join_request: JoinRequest) -> bool:
    """GuestGate is joining the invited guest."""
    return _move(join_request, from_=[Status.INVITED], to=Status.JOINING)


def join_request_joined(join_request: JoinRequest) -> bool:
    """Main shows the person joined."""
    return _move(
        join_request,
        from_=JoinRequest.OPEN,
        to=Status.JOINED,
        action=AuditEntry.Action.JOINED,
        by=By(join_request.user_id),
    )


def join_request_cancelled(join_request: JoinRequest, *, via_guestgate: bool) -> bool:
    """The person stopped waiting: in their lobby (before a decision) or by leaving on Matrix."""
    return _move(
        join_request,
        from_=DECIDABLE if via_guestgate else JoinRequest.OPEN,
        to=Status.CANCELLED,
        action=AuditEntry.Action.CANCELLED,
        by=By(join_request.user_id, via_guestgate=via_guestgate),
    )


def join_request_denied(
    join_request: JoinRequest, *, decider: str | None, by: By | None, reason: str
) -> bool:
    """Main shows a kick: the person was turned away; ``reason`` reaches their lobby."""
    return _move(
        join_request,
        from_=JoinRequest.OPEN,
        to=Status.DENIED,
        action=AuditEntry.Action.DENIED,
        by=by,
        reason=reason,
        **_decision(decider),
    )


def join_request_banned(
    join_request: JoinRequest,
    *,
    decider: str | None,
    by: By | None,
    reason: str = "",
    reason_code: str = "",
) -> bool:
    """Main shows a ban: turned away for good. ``reason_code``: GuestGate's own words
    (``rooms.guest_messages``) when no moderator gave a reason."""
    return _move(
        join_request,
        from_=JoinRequest.OPEN,
        to=Status.BANNED,
        action=AuditEntry.Action.BANNED,
        by=by,
        reason=reason,
        reason_code=reason_code,
        **_decision(decider),
    )


def join_request_ban_undone(join_request: JoinRequest, *, by: By) -> bool:
    """A ban made moments ago is taken back (``rooms.moderation`` lifted it on main): the person
    was turned away, not banned, and may ask again where the policy allows. The moderator's
    reason stays; GuestGate's own words for a ban go."""
    return _move(
        join_request,
        from_=[Status.BANNED],
        to=Status.DENIED,
        action=AuditEntry.Action.BAN_UNDONE,
        by=by,
        reason_code="",
    )


def join_request_failed(join_request: JoinRequest, *, reason_code: str, detail: str) -> bool:
    """GuestGate gave up on a step; the lobby offers "Try again". ``detail``: the homeserver's
    error code, shown in the guest's message and the audit log."""
    return _move(
        join_request,
        from_=[Status.PROVISIONING, Status.INVITED, Status.JOINING],
        to=Status.FAILED,
        action=AuditEntry.Action.FAILED,
        by=By(GUESTGATE, reason=detail),
        reason=detail,
        reason_code=reason_code,
    )


def join_request_restarted(join_request: JoinRequest) -> bool:
    """A failed request starts over (raises IntegrityError if the guest has another open)."""
    return _move(
        join_request,
        from_=[Status.FAILED],
        to=Status.PROVISIONING,
        reason="",
        reason_code="",
        attempts=0,
    )


def join_request_expired(join_request: JoinRequest) -> bool:
    """The guest's account ended by its retention policy while the request was open."""
    return _move(
        join_request,
        from_=JoinRequest.OPEN,
        to=Status.EXPIRED,
        action=AuditEntry.Action.EXPIRED,
        by=By(GUESTGATE),
    )


def join_request_note_retry(join_request: JoinRequest) -> None:
    """Count a homeserver retry (no change of status), so the lobby can say it is still
    working."""
    JoinRequest.objects.filter(pk=join_request.pk, status__in=JoinRequest.OPEN).update(
        attempts=F("attempts") + 1, version=F("version") + 1, updated_at=timezone.now()
    )
    changes.poke_after_commit()


def join_request_removed(join_request: JoinRequest, *, by: By, reason: str = "") -> bool:
    """A moderator removed the let-in guest from the call (kicked from the room on main); the
    lobby says so and ends the call on the guest's screen."""
    return _move(
        join_request,
        from_=[Status.JOINED],
        to=Status.REMOVED,
        action=AuditEntry.Action.REMOVED,
        by=by,
        reason=reason,
        reason_code="",
    )


def join_request_call_changed(join_request: JoinRequest) -> None:
    """A device of the guest joined or left the call (no change of status): the dashboards
    following the room hear of it."""
    JoinRequest.objects.filter(pk=join_request.pk).update(
        version=F("version") + 1, updated_at=timezone.now()
    )
    changes.poke_after_commit()
