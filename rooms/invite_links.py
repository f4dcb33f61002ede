"""Invite links: made by moderators, redeemed by guests, and their public address.

A guest's token is looked up by its hash; the token itself is kept encrypted with the keys
that protect guests' access tokens (guestgate.crypto), so that a link's moderators can show
its address, QR code and poster again. It is never logged and never put in a URL of
GuestGate's own pages. Links made before tokens were kept cannot be shown again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from accounts.models import RetentionPolicy
from accounts.services import default_policy
from guestgate.crypto import (
    UndecryptableSecret,
    decrypt,
    encrypt,
    new_invite_token,
    normalize_invite_token,
    token_hash,
)
from guestgate.errors import GuestGateError
from rooms.models import AuditEntry, CallRoom, InviteLink

#: How long after revoking a link its moderator may take that back ("Revoked. Undo").
REVOKE_UNDO_WINDOW = timedelta(seconds=30)


class InviteLinkUnusable(GuestGateError):
    """The link cannot bring anyone in; ``code`` says why (for the page and the status)."""


# (code, HTTP status, words for the guest: translated when raised)
_UNKNOWN = (
    "link.unknown",
    404,
    gettext_noop(
        "This invite link does not exist. Check that you typed or "
        "scanned all of it, or ask the person who invited you for a new one."
    ),
)
_EXPIRED = (
    "link.expired",
    410,
    gettext_noop("This invite link has expired. Ask the person who invited you for a new one."),
)
_REVOKED = (
    "link.revoked",
    410,
    gettext_noop("This invite link was withdrawn by the organisers."),
)
_USED_UP = (
    "link.used_up",
    410,
    gettext_noop(
        "This invite link has been used as many times as it allows. "
        "Ask the person who invited you for a new one."
    ),
)
_ROOM_GONE = (
    "link.room_unavailable",
    410,
    gettext_noop("The call this link leads to is not open to guests at the moment."),
)


def _unusable(reason: tuple[str, int, str]) -> InviteLinkUnusable:
    code, status, message = reason
    return InviteLinkUnusable(gettext(message), code=code, status=status)


@dataclass(frozen=True)
class NewInviteLink:
    link: InviteLink
    token: str


def invite_link_create(
    *,
    room: CallRoom,
    created_by: str,
    label: str = "",
    pre_approved: bool = False,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
    retention_policy: RetentionPolicy | None = None,
) -> NewInviteLink:
    """Make a link to ``room``; ``retention_policy`` None: the room's policy applies."""
    token = new_invite_token()
    link = InviteLink.objects.create(
        room=room,
        token_hash=token_hash(token),
        token_encrypted=encrypt(token),
        retention_policy=retention_policy,
        label=label,
        pre_approved=pre_approved,
        expires_at=expires_at,
        max_uses=max_uses,
        created_by=created_by,
    )
    return NewInviteLink(link=link, token=token)


def invite_link_for_token(token: str) -> InviteLink:
    """The usable link behind ``token``, or InviteLinkUnusable saying why not."""
    token = normalize_invite_token(token)
    link = (
        InviteLink.objects.select_related("room").filter(token_hash=token_hash(token)).first()
        if 10 <= len(token) <= 64
        else None
    )
    if link is None:
        raise _unusable(_UNKNOWN)
    _refuse_if_unusable(link)
    return link


def invite_link_redeem(link: InviteLink) -> None:
    """Count one use, atomically: with one use left, exactly one of many concurrent guests wins.

    Call inside the transaction that creates what the use is for.
    """
    usable = (
        Q(pk=link.pk, revoked_at__isnull=True)
        & (Q(expires_at__isnull=True) | Q(expires_at__gte=timezone.now()))
        & (Q(max_uses__isnull=True) | Q(use_count__lt=F("max_uses")))
    )
    if InviteLink.objects.filter(usable).update(use_count=F("use_count") + 1) != 1:
        link.refresh_from_db()
        _refuse_if_unusable(link)
        raise _unusable(_USED_UP)


def _refuse_if_unusable(link: InviteLink) -> None:
    if link.revoked_at is not None:
        raise _unusable(_REVOKED)
    if link.expires_at is not None and timezone.now() > link.expires_at:
        raise _unusable(_EXPIRED)
    if link.max_uses is not None and link.use_count >= link.max_uses:
        raise _unusable(_USED_UP)
    if link.room.status != CallRoom.Status.READY:
        raise _unusable(_ROOM_GONE)


def _link_audit(link: InviteLink, action: str, *, actor: str, reason: str = "") -> None:
    """The audit entry of a change to a link (call inside the change's transaction)."""
    AuditEntry.objects.create(
        room_id=link.room_id, action=action, actor=actor, subject_name=str(link), reason=reason
    )


def invite_link_revoke(link: InviteLink, *, by: str) -> bool:
    """Withdraw the link at once, audited as ``by``'s; True if this call revoked it."""
    with transaction.atomic():
        revoked = (
            InviteLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now(), revoked_by=by
            )
            == 1
        )
        if revoked:
            _link_audit(link, AuditEntry.Action.LINK_REVOKED, actor=by)
    return revoked


class RevokeNotUndone(GuestGateError):
    """Revoking a link was not taken back; ``code`` says why."""

    status = 409


def invite_link_restore(link: InviteLink, *, by: str, room_admin: bool) -> None:
    """Take back a revocation made less than ``REVOKE_UNDO_WINDOW`` ago: the same link (and
    token, so posters already up) works again, audited as ``by``'s. Only the moderator who
    revoked it may, or the room's admins (``room_admin``); anyone else, or too late, gets
    RevokeNotUndone and nothing changes."""
    recent = timezone.now() - REVOKE_UNDO_WINDOW
    undoable = InviteLink.objects.filter(pk=link.pk, revoked_at__gte=recent)
    with transaction.atomic():
        if (undoable if room_admin else undoable.filter(revoked_by=by)).update(
            revoked_at=None, revoked_by=""
        ) == 1:
            _link_audit(link, AuditEntry.Action.LINK_RESTORED, actor=by)
            return
    current = undoable.values_list("revoked_by", flat=True).first()
    if current is not None:  # still in the window: someone else revoked it
        raise RevokeNotUndone(
            gettext("Only %(who)s, who revoked “%(link)s”, or the room's admins may undo that.")
            % {"who": current or gettext("the moderator"), "link": link},
            code="link.undo_not_yours",
            status=403,
        )
    raise RevokeNotUndone(
        gettext("Too late to undo: “%(link)s” stays revoked. Make a new link instead.")
        % {"link": link},
        code="link.undo_too_late",
    )


def invite_link_may_undo(link: InviteLink, *, by: str, room_admin: bool) -> bool:
    """Whether ``by`` may still take back the link's revocation (the page offers "Undo")."""
    return invite_link_undo_possible(link) and (room_admin or link.revoked_by == by)


def invite_link_set_policy(link: InviteLink, policy: RetentionPolicy | None, *, by: str) -> bool:
    """The link's retention policy (None: the room's), audited as ``by``'s; False if it was
    that already. Guests who came through it follow at the next sweep."""
    with transaction.atomic():
        current = (
            InviteLink.objects.select_for_update(of=("self",))
            .select_related("retention_policy", "room__retention_policy")
            .get(pk=link.pk)
        )
        if current.retention_policy_id == (policy.pk if policy else None):
            return False
        InviteLink.objects.filter(pk=link.pk).update(retention_policy=policy)
        _link_audit(
            current,
            AuditEntry.Action.POLICY_CHANGED,
            actor=by,
            reason=f"{_policy_name(current.retention_policy, room=current.room)} → "
            f"{_policy_name(policy, room=current.room)}",
        )
    link.retention_policy = policy
    return True


def _policy_name(policy: RetentionPolicy | None, *, room: CallRoom) -> str:
    """A link's policy as the audit log names it; the room's, in brackets, when it has none."""
    if policy is not None:
        return policy.name
    return f"({(room.retention_policy or default_policy()).name})"


def invite_link_undo_possible(link: InviteLink) -> bool:
    """Whether ``invite_link_restore`` would still take back the link's revocation."""
    return link.revoked_at is not None and link.revoked_at >= timezone.now() - REVOKE_UNDO_WINDOW


def invite_link_token(link: InviteLink) -> str | None:
    """The link's token, to show its address again; None for a link made before tokens were
    kept, or kept with a key that is no longer configured."""
    if not link.token_encrypted:
        return None
    try:
        token = decrypt(link.token_encrypted)
    except UndecryptableSecret:
        return None
    # A token that does not match the link's hash is never shown (a row edited by hand).
    return token if hmac.compare_digest(link.token_hash, token_hash(token)) else None


def invite_link_token_matches(link: InviteLink, token: str) -> bool:
    """Whether ``token`` is this link's (to render its QR code or poster again)."""
    return hmac.compare_digest(link.token_hash, token_hash(normalize_invite_token(token)))


def invite_link_state(link: InviteLink) -> str:
    """active, expired, used_up or revoked: what the moderator sees next to the link."""
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at is not None and timezone.now() > link.expires_at:
        return "expired"
    if link.max_uses is not None and link.use_count >= link.max_uses:
        return "used_up"
    return "active"


def invite_url(token: str) -> str:
    return f"{settings.PUBLIC_URL}{reverse('join', kwargs={'token': token})}"


def grouped(token: str) -> str:
    """The token in groups of five, for people typing it from a poster (hyphens are ignored)."""
    groups = [token[i : i + 5] for i in range(0, len(token), 5)]
    if len(groups) > 1 and len(groups[-1]) < 3:  # no lonely last letter: 5-5-5-5-6
        groups[-2:] = [groups[-2] + groups[-1]]
    return "-".join(groups)
