"""A moderator's one line to the guests waiting in a room's lobby ("We start at 10:05").

The line is kept on each join request it reached (``JoinRequest.announcement``), and writing it
bumps the request's ``version``: the lobby's long poll already wakes on exactly that (rooms.live
watches join requests), so the message appears live with no second thing to watch, and a guest
who arrives later does not read a line that was meant for those already there. One audit entry
per guest reached, in the same transaction, says who wrote what to whom.
"""

from __future__ import annotations

import unicodedata

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from guestgate.errors import GuestGateError
from rooms.live import changes
from rooms.models import AuditEntry, CallRoom, JoinRequest

#: The longest line a moderator may send (a line a phone shows on two or three lines).
MAX_LENGTH = 200
#: Who a message reaches: guests still waiting (or still being set up).
WAITING = (JoinRequest.Status.PROVISIONING, JoinRequest.Status.WAITING)


class AnnouncementRefused(GuestGateError):
    """The message cannot be sent as typed; ``message`` says why. Nothing was saved."""

    status = 400


def announcement_clean(raw: str) -> str:
    """The line as it will be shown: one line of plain text, spaces tidied.

    Raises AnnouncementRefused for an empty line, a line over ``MAX_LENGTH`` characters, or
    one with control characters (line breaks included: it is one line)."""
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        raise AnnouncementRefused(
            gettext("Type the message for the waiting guests."), code="announcement.empty"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise AnnouncementRefused(
            gettext("The message must be one line of plain text (no line breaks)."),
            code="announcement.not_one_line",
        )
    text = " ".join(text.split())
    if len(text) > MAX_LENGTH:
        raise AnnouncementRefused(
            gettext("The message is %(length)d characters long; at most %(max)d fit.")
            % {"length": len(text), "max": MAX_LENGTH},
            code="announcement.too_long",
        )
    return text


def announcement_send(
    *, room: CallRoom, moderator: str, text: str, join_request: JoinRequest | None = None
) -> int:
    """Show ``text`` in the lobbies of the room's waiting guests, or of ``join_request`` only;
    how many it reached (0: nobody waiting, or that guest no longer waits).

    ``text`` is cleaned first (``announcement_clean``); AnnouncementRefused leaves everything as
    it was. The caller checks the moderator's right (invite: the right to let guests in)."""
    text = announcement_clean(text)
    waiting = JoinRequest.objects.filter(room=room, status__in=WAITING)
    if join_request is not None:
        waiting = waiting.filter(pk=join_request.pk)
    with transaction.atomic():
        reached = list(waiting.select_for_update().values_list("pk", "user_id", "display_name"))
        if not reached:
            return 0
        JoinRequest.objects.filter(pk__in=[pk for pk, _, _ in reached]).update(
            announcement=text, version=F("version") + 1, updated_at=timezone.now()
        )
        AuditEntry.objects.bulk_create(
            AuditEntry(
                room=room,
                join_request_id=pk,
                action=AuditEntry.Action.MESSAGED,
                actor=moderator,
                subject=user_id,
                subject_name=name,
                reason=text,
            )
            for pk, user_id, name in reached
        )
        changes.poke_after_commit()  # this process's long polls hear of it at once
    return len(reached)
