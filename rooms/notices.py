"""Moderators reached inside Matrix: the waiting notice, and letting guests in from it.

Matrix notifies nobody of a knock (element-call#2342), so GuestGate's bot says it in the call
room:

- While guests wait, the bot keeps one ``m.notice`` there listing them, numbered, with how long
  they have waited and a link to the room's dashboard page. It edits that message
  (``m.replace``) as the queue changes and closes it when the queue empties; the next guest
  starts a new one. A guest keeps their number for the notice's life.
- Refreshes are coalesced and rate-limited: a change of the queue marks the notice due and
  queues one refresh, at most one send or edit per ``MIN_INTERVAL``, which reads the queue when
  it runs; a burst of guests makes a handful of edits, not one each. Every minute a safety net
  refreshes each room with guests waiting or a notice open (a refresh that finds nothing
  changed sends nothing): a lost task costs a minute, not a stale notice.
- The notice, its edits and the bot's answers are in the room's notice language (chosen on
  the room's settings page; else the site's).
- Several call rooms may post in one moderators' room: one notice each, naming its call room.
  A reaction acts on the queue of the notice it reacts to; a command there replies to a notice
  or names its call room (``!guests Team call: let in 2``).
- Moderators answer in their Matrix client: a reaction to the notice (a keycap digit lets in
  that guest, ✅ everyone listed) or a command (``command_help``); a command reaches any
  number, or a guest by name. Main pushes these;
  ``rooms.membership`` stores the ones that may be for GuestGate with the membership events
  and applies them in order, here. The sender's power in the room decides, as on the
  dashboard (``rooms.permissions``); the decision runs through ``rooms.moderation`` and the
  audit log records it as made in Matrix.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.translation import gettext, ngettext

from guestgate import homeservers
from guestgate.errors import GuestGateError
from guestgate.retrying import run_retrying, send_after_commit, task_send
from matrix import Forbidden, NotFound
from matrix.appservice import RoomEvent
from rooms.guest_steps import join_request_load
from rooms.models import CallRoom, JoinRequest, MembershipEvent, WaitingNotice
from rooms.moderation import AlreadyDecided, approve_claimed, join_request_deny
from rooms.transitions import DECIDABLE

logger = logging.getLogger(__name__)

Status = JoinRequest.Status

#: What a command to GuestGate starts with (case does not matter).
COMMAND_PREFIX = "!guests"
#: At most one send or edit of a room's notice this often.
MIN_INTERVAL = timedelta(seconds=3)
#: The first refresh waits this long, so the first guests of a burst share the first notice.
FIRST_DELAY_SECONDS = 1.0
#: The minutes shown are brought up to date no sooner than this after the last send or edit:
#: the safety net runs every minute, so a notice whose only change is its times is edited about
#: once a minute (a little less than 60 s, so the runs' timing never skips a minute).
FRESH_TIMES_INTERVAL = timedelta(seconds=50)
#: A refresh that has not finished by then is taken to have died (its lease ends).
LEASE = timedelta(seconds=60)
#: Reactions: a keycap digit lets in that guest, the check mark everyone listed.
KEYCAPS = {f"{number}\u20e3": number for number in range(1, 10)}
EVERYONE = "\u2705"
#: The pushed event types rooms.membership stores for this module.
MODERATOR_EVENTS = ("m.reaction", "m.room.message")

_MAX_BODY = 1000


# -- The notice ------------------------------------------------------------------------------


def waiting_notice_soon(room_id: str) -> None:
    """The queue of a call room (by Matrix room id) may have changed: refresh its notice soon,
    once for all the changes until then. Not a call room: nothing."""
    room_pk = CallRoom.objects.filter(room_id=room_id).values_list("pk", flat=True).first()
    if room_pk is None:
        return
    notice, _ = WaitingNotice.objects.get_or_create(room_id=room_pk)
    now = timezone.now()
    if WaitingNotice.objects.filter(pk=notice.pk, due_at__isnull=True).update(due_at=now):
        _refresh_later(notice, now)


def _refresh_later(notice: WaitingNotice, now: datetime) -> None:
    """Queue the room's refresh (after commit) for when the rate limit allows it."""
    wait = FIRST_DELAY_SECONDS
    if notice.sent_at is not None:
        wait = max(wait, (notice.sent_at + MIN_INTERVAL - now).total_seconds())
    transaction.on_commit(
        partial(task_send, refresh_waiting_notice, (notice.room_id,), countdown=wait)
    )


@dataclass(frozen=True)
class Waiting:
    """One guest as the notice lists them."""

    pk: int
    display_name: str
    since: datetime


def _waiting(room: CallRoom) -> list[Waiting]:
    """Who waits for a decision, first come first (a request a moderator already claimed is
    being let in or turned away: not listed)."""
    rows = (
        JoinRequest.objects.filter(room=room, status=Status.WAITING, decided_by="")
        .order_by("created_at", "pk")
        .values_list("pk", "display_name", "created_at")
    )
    return [Waiting(pk, name, since) for pk, name, since in rows]


def numbered(shown: Sequence[Sequence[int]], waiting: Sequence[int]) -> list[list[int]]:
    """The notice's ``[[number, join_request_pk], ...]``: those shown keep their numbers, new
    guests get the next ones; a number once used in a notice is never given to another."""
    still = set(waiting)
    kept = [[number, pk] for number, pk in shown if pk in still]
    listed = {pk for _, pk in kept}
    next_number = max((number for number, _ in shown), default=0) + 1
    for pk in waiting:
        if pk not in listed:
            kept.append([next_number, pk])
            next_number += 1
    return kept


def waiting_notice_refresh(room: CallRoom) -> str:
    """Bring the room's notice up to date with its queue: send, edit, close, or nothing.
    What happened: "sent", "edited", "closed", "unchanged", or "later" (rate limit or another
    refresh running: queued again)."""
    notice, _ = WaitingNotice.objects.get_or_create(room=room)
    now = timezone.now()
    too_soon = notice.sent_at is not None and now < notice.sent_at + MIN_INTERVAL
    claimed = not too_soon and WaitingNotice.objects.filter(
        Q(busy_until__isnull=True) | Q(busy_until__lt=now), pk=notice.pk
    ).update(busy_until=now + LEASE)
    if not claimed:
        WaitingNotice.objects.filter(pk=notice.pk).update(due_at=now)
        _refresh_later(notice, now)
        return "later"
    try:
        # Changes from now on queue another refresh, which reads what this one could not.
        WaitingNotice.objects.filter(pk=notice.pk).update(due_at=None)
        notice.refresh_from_db()
        return _refresh(room, notice, now)
    finally:
        WaitingNotice.objects.filter(pk=notice.pk).update(busy_until=None)


def _refresh(room: CallRoom, notice: WaitingNotice, now: datetime) -> str:
    waiting = _waiting(room)
    if notice.event_id and (notice.in_room or room.room_id) != room.notice_room:
        _move_away(room, notice, now)  # the admins chose another room since it was sent
    shown = notice.guests if notice.event_id else []
    guests = numbered(shown, [guest.pk for guest in waiting])
    if not notice.event_id and not waiting:
        return "unchanged"
    shared = _shares_notice_room(room)
    with translation.override(notice_language(room)):
        same_guests = bool(notice.event_id and waiting and guests == shown)
        if same_guests and not _reads_otherwise(room, notice, guests, waiting, now, shared):
            return "unchanged"
        text, html = notice_text(room, guests, waiting, now, shared=shared)
    if not notice.event_id:
        return _start(room, notice, guests, (text, html), now)
    _edit(notice, room.notice_room, text, html)
    notices = WaitingNotice.objects.filter(pk=notice.pk)
    if waiting:
        notices.update(guests=guests, edits=notice.edits + 1, digest=_digest(text), sent_at=now)
        return "edited"
    notices.update(event_id="", in_room="", guests=[], edits=0, opened_ts=0, digest="", sent_at=now)
    return "closed"


def notice_language(room: CallRoom) -> str:
    """The language of the room's notice and of the bot's answers about it."""
    return room.notice_language or settings.LANGUAGE_CODE


def _shares_notice_room(room: CallRoom) -> bool:
    """Whether other call rooms post their notices in the same moderators' room."""
    if not room.notice_room_id:
        return False
    return CallRoom.objects.filter(notice_room_id=room.notice_room_id).exclude(pk=room.pk).exists()


def _reads_otherwise(
    room: CallRoom,
    notice: WaitingNotice,
    guests: list[list[int]],
    waiting: list[Waiting],
    now: datetime,
    shared: bool,
) -> bool:
    """Whether the notice, listing the same guests, should be edited: it would read otherwise
    than as last sent even at that time (another language or room name, other call rooms
    sharing its room), or its waiting times changed and it was last sent long enough ago
    (``FRESH_TIMES_INTERVAL``)."""
    sent_at = notice.sent_at
    if sent_at is None:
        return True
    then = notice_text(room, guests, waiting, sent_at, shared=shared)
    if _digest(then[0]) != notice.digest:
        return True
    if now < sent_at + FRESH_TIMES_INTERVAL:
        return False
    return then != notice_text(room, guests, waiting, now, shared=shared)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _edit(notice: WaitingNotice, room_id: str, text: str, html: str) -> None:
    """Replace the open notice's text (once: the transaction id comes from the edit)."""
    edits = notice.edits + 1
    digest = hashlib.sha256(f"{notice.event_id}|{edits}|{text}".encode()).hexdigest()[:32]
    with homeservers.main_bot() as bot:
        bot.edit_message(room_id, notice.event_id, text, html=html, txn_id=f"gg-edit-{digest}")


def _move_away(room: CallRoom, notice: WaitingNotice, now: datetime) -> None:
    """The open notice is in a room that no longer receives it: say so there and forget it;
    the refresh starts a new one in the room chosen."""
    with translation.override(notice_language(room)):
        moved = gettext(
            "GuestGate now posts who waits to join %(room)s in another room; this list is closed."
        ) % {"room": room.display_name}
    _edit(notice, notice.in_room or room.room_id, moved, f"<p>{escape(moved)}</p>")
    WaitingNotice.objects.filter(pk=notice.pk).update(
        event_id="", in_room="", guests=[], edits=0, opened_ts=0, digest=""
    )
    notice.event_id, notice.in_room, notice.guests, notice.edits = "", "", [], 0


def _start(
    room: CallRoom,
    notice: WaitingNotice,
    guests: list[list[int]],
    written: tuple[str, str],
    now: datetime,
) -> str:
    """Record, act, record: the transaction id first, so that a retry after a crash gets the
    same notice back from main instead of a second one. ``written``: its text and HTML."""
    text, html = written
    repeat = bool(notice.txn_id)
    txn_id = notice.txn_id or f"gg-notice-{uuid.uuid4().hex}"
    WaitingNotice.objects.filter(pk=notice.pk).update(txn_id=txn_id)
    in_room = room.notice_room
    with homeservers.main_bot() as bot:
        event_id = bot.send_notice(in_room, text, html=html, txn_id=txn_id)
        opened_ts = bot.event(in_room, event_id).origin_server_ts or 0
    # A repeated transaction id shows the first attempt's text: edit it at the next refresh.
    WaitingNotice.objects.filter(pk=notice.pk).update(
        event_id=event_id,
        in_room=in_room,
        txn_id="",
        guests=[] if repeat else guests,
        opened_ts=opened_ts,
        digest="" if repeat else _digest(text),
        edits=0,
        sent_at=now,
    )
    if repeat:
        WaitingNotice.objects.filter(pk=notice.pk).update(due_at=now)
        _refresh_later(notice, now)
    return "sent"


def notice_text(
    room: CallRoom,
    guests: list[list[int]],
    waiting: list[Waiting],
    now: datetime,
    *,
    shared: bool = False,
) -> tuple[str, str]:
    """The notice's plain text and HTML: who waits, numbered, or that nobody does any more.
    ``shared``: other call rooms post in the same room, so a command must name this one."""
    dashboard = settings.PUBLIC_URL + reverse("moderator-room", args=[room.pk])
    link = gettext("Dashboard: %(url)s") % {"url": dashboard}
    link_html = f'<a href="{escape(dashboard)}">{escape(gettext("Open the dashboard"))}</a>'
    if not waiting:
        closed = gettext("Nobody is waiting to join %(room)s any more.") % {
            "room": room.display_name
        }
        return f"{closed}\n{link}", f"<p>{escape(closed)} {link_html}</p>"
    by_pk = {guest.pk: guest for guest in waiting}
    heading = ngettext(
        "%(count)d guest is waiting to join %(room)s:",
        "%(count)d guests are waiting to join %(room)s:",
        len(waiting),
    ) % {"count": len(waiting), "room": room.display_name}
    lines = [
        (number, by_pk[pk].display_name, _waited(now - by_pk[pk].since)) for number, pk in guests
    ]
    how = _how_to_answer(room, [number for number, _ in guests], shared=shared)
    text = "\n".join(
        [heading, *(f"{n}. {name} ({waited})" for n, name, waited in lines), *how, link]
    )
    items = "<br>".join(
        f"<b>{n}.</b> {escape(name)} ({escape(waited)})" for n, name, waited in lines
    )
    how_html = "<br>".join(escape(line) for line in how)
    html = f"<p><b>{escape(heading)}</b><br>{items}</p><p>{how_html}<br>{link_html}</p>"
    return text, html


def _how_to_answer(room: CallRoom, numbers: list[int], *, shared: bool) -> list[str]:
    """The notice's lines on how to answer it: reactions, commands, what reaches a number
    past the keycaps' nine, and how to name the call room in a room several post in."""
    how = [
        gettext(
            "React with a guest's number (1️⃣ to 9️⃣) to let them in, or with "
            '✅ to let everyone listed in; or write "!guests let in 2", "!guests let in all" '
            'or "!guests deny 2 <reason>".'
        )
    ]
    beyond = [number for number in numbers if number > max(KEYCAPS.values())]
    if beyond:
        how.append(
            gettext(
                'Numbers past 9 have no reaction: write "!guests let in %(number)d" or '
                '"!guests let in <name>" instead.'
            )
            % {"number": beyond[0]}
        )
    if shared:
        how.append(
            gettext(
                "Other call rooms post here too: reply to this notice with your command, or "
                'name the room: "!guests %(room)s: let in 2".'
            )
            % {"room": room.display_name}
        )
    return how


def _waited(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    if minutes < 1:
        return gettext("just now")
    return ngettext("waiting %(n)d minute", "waiting %(n)d minutes", minutes) % {"n": minutes}


@shared_task(bind=True, max_retries=8)
def refresh_waiting_notice(self: Task, room_pk: int) -> None:
    """Bring one room's waiting notice up to date (queued by the changes of its queue)."""
    room = CallRoom.objects.filter(pk=room_pk).first()
    if room is None:
        return
    run_retrying(
        self,
        lambda: waiting_notice_refresh(room),
        on_give_up=lambda error: logger.error("room %s: notice not refreshed: %s", room, error),
    )


@shared_task
def refresh_waiting_notices() -> int:
    """Every minute, the safety net: a refresh for each room with guests waiting or a notice
    open (one that finds nothing changed sends nothing). How many were queued."""
    rooms = set(
        JoinRequest.objects.filter(status=Status.WAITING).values_list("room_id", flat=True)
    ) | set(WaitingNotice.objects.exclude(event_id="").values_list("room_id", flat=True))
    for room_pk in rooms:
        refresh_waiting_notice.delay(room_pk)
    return len(rooms)


# -- Where the notice goes -------------------------------------------------------------------


class NoticeRoomRefused(GuestGateError):
    code = "room.notice_room_refused"
    status = 400


def notice_room_set(room: CallRoom, typed: str) -> bool:
    """Send the room's waiting notice to another Matrix room (an id ``!…`` or address ``#…``),
    e.g. its moderators' room; empty (or the call room): the call room itself. Checked first:
    GuestGate's bot joins that room (it must be invited to a closed one) and may post there;
    else NoticeRoomRefused (or the homeserver's MatrixError) and nothing is saved. An open
    notice moves at the next refresh. True if the choice changed.

    Several call rooms may post in one moderators' room (each notice names its call room; a
    command there replies to a notice or names the call room), but a call room may not receive
    another's notice: a command in it acts on its own queue.
    """
    typed = typed.strip()
    room_id = "" if typed in ("", room.room_id) else _notice_room_id(typed)
    if room_id == room.notice_room_id:
        return False
    if room_id:
        _check_notice_room(room, room_id)
    left = room.notice_room_id
    CallRoom.objects.filter(pk=room.pk).update(notice_room_id=room_id)
    room.notice_room_id = room_id
    # The room's notice moves; those it leaves or joins say whether to name the call room.
    neighbours = CallRoom.objects.filter(notice_room_id__in={left, room_id} - {""})
    with transaction.atomic():
        for call_room_id in {room.room_id, *neighbours.values_list("room_id", flat=True)}:
            waiting_notice_soon(call_room_id)
    return True


def notice_language_set(room: CallRoom, language: str) -> None:
    """The language of the room's notice and the bot's answers ("": the site's language); an
    open notice is edited into it. Not one of settings.LANGUAGES: ValueError."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"not a language of GuestGate: {language!r}")
    if language == room.notice_language:
        return
    CallRoom.objects.filter(pk=room.pk).update(notice_language=language)
    room.notice_language = language
    with transaction.atomic():
        waiting_notice_soon(room.room_id)  # an open notice is edited into it


def _notice_room_id(typed: str) -> str:
    if typed.startswith("#"):
        try:
            with homeservers.main_bot() as bot:
                return bot.resolve_alias(typed)[0]
        except NotFound:
            raise NoticeRoomRefused(
                gettext("No room has the address %(room)s.") % {"room": typed}
            ) from None
    if not typed.startswith("!") or len(typed) > 255:
        raise NoticeRoomRefused(
            gettext("Give the room's id (starting with !) or address (starting with #).")
        )
    return typed


def _check_notice_room(room: CallRoom, room_id: str) -> None:
    if CallRoom.objects.filter(room_id=room_id).exists():
        raise NoticeRoomRefused(
            gettext("That room is a call room of its own: choose a room for moderators.")
        )
    bot_id = homeservers.main_bot_user_id()
    with homeservers.main_bot() as bot:
        try:
            bot.ensure_joined(room_id, via=[settings.MAIN_HS_SERVER_NAME])
        except (Forbidden, NotFound):
            raise NoticeRoomRefused(
                gettext(
                    "GuestGate's bot %(bot_id)s could not join that room. Invite it to the room, "
                    "then save again."
                )
                % {"bot_id": bot_id}
            ) from None
        levels = bot.power_levels(room_id)
    if levels.level_of(bot_id) < levels.events.get("m.room.message", levels.events_default):
        raise NoticeRoomRefused(
            gettext(
                "GuestGate's bot %(bot_id)s may not post messages in that room. Give it the "
                "power to send messages there, then save again."
            )
            % {"bot_id": bot_id}
        )


# -- What moderators answer in Matrix ---------------------------------------------------------


def moderator_event_rows(events: Sequence[RoomEvent]) -> list[MembershipEvent]:
    """Of a pushed transaction, the events that may be for GuestGate, as rows to store and
    apply: reactions to an open waiting notice, and messages in a call room (or a room its
    notice goes to) that start with the command prefix, with the event a command replies to.
    Everything else (and what GuestGate's bot sent) is dropped here."""
    bot = homeservers.main_bot_user_id()
    reactions = {
        event.event_id: found
        for event in events
        if event.type == "m.reaction" and event.sender != bot
        if (found := _annotation(event)) is not None
    }
    commands = {
        event.event_id: text
        for event in events
        if event.type == "m.room.message" and event.sender != bot
        if (text := _command_text(event)) is not None
    }
    if not reactions and not commands:
        return []
    open_notices = set(
        WaitingNotice.objects.filter(
            event_id__in={target for target, _ in reactions.values()}
        ).values_list("event_id", flat=True)
    )
    command_rooms = {e.room_id for e in events if e.event_id in commands}
    call_rooms = set(
        CallRoom.objects.filter(room_id__in=command_rooms).values_list("room_id", flat=True)
    ) | set(
        CallRoom.objects.filter(notice_room_id__in=command_rooms).values_list(
            "notice_room_id", flat=True
        )
    )
    rows = []
    for event in events:
        relates_to, body = "", ""
        if event.event_id in reactions and reactions[event.event_id][0] in open_notices:
            relates_to, body = reactions[event.event_id]
        elif event.event_id in commands and event.room_id in call_rooms:
            relates_to, body = _replied_to(event), commands[event.event_id]
        else:
            continue
        rows.append(
            MembershipEvent(
                event_id=event.event_id,
                room_id=event.room_id,
                type=event.type,
                user_id=event.sender,
                sender=event.sender,
                origin_server_ts=event.origin_server_ts,
                relates_to=relates_to,
                body=body,
            )
        )
    return rows


def _annotation(event: RoomEvent) -> tuple[str, str] | None:
    relation = event.content.get("m.relates_to")
    if not isinstance(relation, dict) or relation.get("rel_type") != "m.annotation":
        return None
    target, key = relation.get("event_id"), relation.get("key")
    if not isinstance(target, str) or not isinstance(key, str) or len(key) > 32:
        return None
    return target, key


def _replied_to(event: RoomEvent) -> str:
    """The event a message replies to ("" if none)."""
    relation = event.content.get("m.relates_to")
    reply = relation.get("m.in_reply_to") if isinstance(relation, dict) else None
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return target if isinstance(target, str) and len(target) <= 255 else ""


def _command_text(event: RoomEvent) -> str | None:
    body = event.content.get("body")
    if isinstance(body, str) and _replied_to(event) and body.startswith("> "):
        # A reply's quoting fallback ("> <@bot> …" lines, then a blank line), which clients
        # that still add it put before the command.
        body = body.split("\n\n", 1)[-1]
    if not isinstance(body, str) or not body.lstrip().lower().startswith(COMMAND_PREFIX):
        return None
    return body.strip()[:_MAX_BODY]


@dataclass(frozen=True)
class Decision:
    """What a moderator asked for: let in (or deny) the guests with these numbers in the
    notice (``numbers`` None: everyone listed), or the one guest listed under ``name``."""

    deny: bool
    numbers: tuple[int, ...] | None
    reason: str = ""
    name: str = ""


def reaction_decision(key: str) -> Decision | None:
    """A reaction's meaning, or None for a reaction that is not for GuestGate (👍)."""
    key = key.replace("\ufe0f", "")  # keycaps come with and without the emoji selector
    if key in KEYCAPS:
        return Decision(deny=False, numbers=(KEYCAPS[key],))
    if key == EVERYONE:
        return Decision(deny=False, numbers=None)
    return None


def command_decision(text: str) -> Decision | None:
    """A command's meaning, or None if it is not one (the sender gets the help).

    ``!guests let in 2``, ``!guests let in 2 5``, ``!guests let in 12``,
    ``!guests let in all``, ``!guests let in Alice``, ``!guests deny 2`` and
    ``!guests deny 2 <reason>``.
    """
    words = text.split()
    if len(words) < 2 or words[0].lower() != COMMAND_PREFIX:
        return None
    verb = [word.lower() for word in words[1:3]]
    if verb == ["let", "in"] and len(words) > 3:
        rest = [word for word in (word.lower().strip(",") for word in words[3:]) if word]
        if rest == ["all"]:
            return Decision(deny=False, numbers=None)
        if rest and all(word.isdigit() for word in rest):
            return Decision(deny=False, numbers=tuple(int(word) for word in rest))
        return Decision(deny=False, numbers=(), name=" ".join(words[3:]))
    if verb[:1] == ["deny"] and len(words) > 2 and words[2].isdigit():
        reason = text.split(None, 3)[3] if len(words) > 3 else ""
        return Decision(deny=True, numbers=(int(words[2]),), reason=reason.strip())
    return None


_NAMED_ROOM = re.compile(
    rf"^\s*{re.escape(COMMAND_PREFIX)}\s+(?P<room>.+?):\s*(?P<rest>(?:let\s+in|deny|help)\b.*)$",
    re.IGNORECASE | re.DOTALL,
)


def command_room(text: str) -> tuple[str, str]:
    """The call room a command names (``!guests Team call: let in 2``: "Team call"; "" if it
    names none) and the command without it (``!guests let in 2``)."""
    named = _NAMED_ROOM.match(text)
    if named is None:
        return "", text
    return named["room"].strip(), f"{COMMAND_PREFIX} {named['rest'].strip()}"


def command_help() -> str:
    return gettext(
        'GuestGate understands "!guests let in 2" (or several numbers: "!guests let in 2 5"), '
        '"!guests let in all", "!guests let in <name>" and "!guests deny 2 <reason>", the '
        "numbers being those of the waiting notice; or react to the notice with a guest's "
        "number, or with ✅ for everyone listed. Where several call rooms post their "
        'notices, reply to the notice with the command or name the room: "!guests Team '
        'call: let in 2".'
    )


def moderator_event_apply(event: MembershipEvent) -> None:
    """Act on a stored reaction or command (inside the applier's transaction): claim the
    decisions, queue their Matrix side after commit, answer the sender when nothing could be
    done for them."""
    served = call_rooms_answered_in(event.room_id)
    if not served:
        return
    named = ""
    if event.type == "m.reaction":
        decision = reaction_decision(event.body)
        if decision is None:
            return
        room: CallRoom | None = _with_open_notice(served, event.relates_to) or served[0]
        notice_event = event.relates_to
    else:
        named, command = command_room(event.body)
        decision = command_decision(command)
        replied = _with_open_notice(served, event.relates_to)
        room = _named_room(served, named) if named else replied or _only(served)
        notice_event = event.relates_to if replied is not None and replied == room else ""
    if decision is None or room is None:
        with translation.override(notice_language(room or served[0])):
            _reply(served[0], event, _not_understood(served, named, decision is None))
        return
    with translation.override(notice_language(room)):
        answer = _decide(room, event, decision, notice_event)
    if answer:
        _reply(room, event, answer)
    waiting_notice_soon(room.room_id)


def call_rooms_answered_in(room_id: str) -> list[CallRoom]:
    """The call rooms whose queues a reaction or command in this Matrix room may act on: the
    call room itself, or the call rooms whose notices their admins sent to this room."""
    room = CallRoom.objects.filter(room_id=room_id).first()
    if room is not None:
        return [room]
    return list(CallRoom.objects.filter(notice_room_id=room_id).order_by("pk"))


def _with_open_notice(rooms: list[CallRoom], event_id: str) -> CallRoom | None:
    """The room whose open notice is that event (a reaction's or a reply's target)."""
    if not event_id:
        return None
    pks = {room.pk for room in rooms}
    notice = WaitingNotice.objects.filter(event_id=event_id, room_id__in=pks).first()
    return next((room for room in rooms if notice and room.pk == notice.room_id), None)


def _named_room(rooms: list[CallRoom], named: str) -> CallRoom | None:
    wanted = named.casefold()
    return next(
        (room for room in rooms if wanted in (room.name.casefold(), room.room_id.casefold())),
        None,
    )


def _only(rooms: list[CallRoom]) -> CallRoom | None:
    return rooms[0] if len(rooms) == 1 else None


def _command_name(room: CallRoom) -> str:
    """How a command names the room: its name, else its id."""
    return room.name or room.room_id


def _not_understood(rooms: list[CallRoom], named: str, no_command: bool) -> str:
    """The answer to a command that is none, or whose call room is unclear."""
    if no_command:
        return command_help()
    names = ", ".join(_command_name(room) for room in rooms)
    if named:
        return gettext(
            "No call room called %(named)s posts its notice here; these do: %(names)s."
        ) % {"named": named, "names": names}
    return gettext(
        "Several call rooms post their notices here (%(names)s): reply to the notice of the "
        'one you mean with your command, or name it: "!guests %(first)s: let in 2".'
    ) % {"names": names, "first": _command_name(rooms[0])}


def _decide(room: CallRoom, event: MembershipEvent, decision: Decision, notice_event: str) -> str:
    """Claim what the sender asked for; what to tell them ("" when all went as asked).
    ``notice_event``: the notice the sender answered (reacted or replied to), else "": the
    open one, if the sender wrote after it was sent."""
    moderator = event.sender
    if not _may(room, moderator, deny=decision.deny):
        need = gettext("to remove people") if decision.deny else gettext("to invite people")
        return gettext(
            "%(who)s: only a moderator of this room can do that (it needs the power %(need)s)."
        ) % {"who": moderator, "need": need}
    notice = WaitingNotice.objects.filter(room=room).exclude(event_id="").first()
    if notice_event and (notice is None or notice.event_id != notice_event):
        return gettext(
            "That list is closed: its numbers are not those of today's queue. Answer the "
            "newest notice."
        )
    sent = event.origin_server_ts
    if not notice_event and notice is not None and sent is not None and sent < notice.opened_ts:
        return gettext(
            "A new list was posted after you wrote, with numbers of its own: look at it and "
            "write again."
        )
    listed = {number: pk for number, pk in notice.guests} if notice is not None else {}
    numbers, problems = _numbers(listed, decision)
    if not numbers and not problems:
        return gettext("Nobody is waiting.")
    for number in numbers:
        pk = listed.get(number)
        if pk is None:
            problems.append(gettext("No guest number %(n)d is waiting.") % {"n": number})
        elif not _claim(pk, moderator, decision):
            problems.append(gettext("Guest number %(n)d was already handled.") % {"n": number})
    return " ".join(problems)


def _numbers(listed: dict[int, int], decision: Decision) -> tuple[list[int], list[str]]:
    """The notice's numbers a decision means, and why it means none when it names a guest
    that no one, or more than one, listed is called."""
    if decision.numbers is None:
        return sorted(listed), []
    if not decision.name:
        return list(decision.numbers), []
    names = dict(
        JoinRequest.objects.filter(pk__in=listed.values()).values_list("pk", "display_name")
    )
    wanted = decision.name.casefold()
    called = {number: names.get(pk, "").casefold() for number, pk in listed.items()}
    exact = sorted(number for number, name in called.items() if name == wanted)
    found = exact or sorted(number for number, name in called.items() if name.startswith(wanted))
    if len(found) == 1:
        return found, []
    if not found:
        return [], [gettext("No guest called %(name)s is waiting.") % {"name": decision.name}]
    return [], [
        gettext("Several guests waiting are called %(name)s (%(numbers)s): write the number.")
        % {"name": decision.name, "numbers": ", ".join(str(number) for number in found)}
    ]


def _may(room: CallRoom, matrix_id: str, *, deny: bool) -> bool:
    """The sender's rights, as on the dashboard (rooms.permissions): an explicit power level
    in the call room (or being a creator) at least what the action needs on Matrix. In a
    moderators' room too, the call room's power levels decide, not that room's."""
    levels = room.levels
    if matrix_id not in levels.users and matrix_id not in levels.creators:
        return False
    return levels.may_kick(matrix_id) if deny else levels.may_invite(matrix_id)


def _claim(pk: int, moderator: str, decision: Decision) -> bool:
    """Let in: the request is claimed for the moderator now (like "let everyone in"; the
    minute's safety net invites a claim whose task was lost). Deny: the task claims it."""
    undecided = JoinRequest.objects.filter(pk=pk, status__in=DECIDABLE, decided_by="")
    if decision.deny:
        if not undecided.exists():
            return False
        send_after_commit(deny_from_matrix, pk, moderator, decision.reason)
        return True
    if not undecided.update(decided_by=moderator, decided_in_matrix=True):
        return False
    send_after_commit(approve_claimed, pk, moderator, False)
    return True


@shared_task(bind=True, max_retries=8)
def deny_from_matrix(self: Task, join_request_id: int, moderator: str, reason: str) -> None:
    """A denial a moderator wrote in Matrix: the same as the dashboard's, audited as in Matrix."""
    join_request = join_request_load(join_request_id)
    if join_request is None or join_request.status not in DECIDABLE:
        return

    def deny() -> None:
        try:
            join_request_deny(join_request, moderator=moderator, reason=reason, via_guestgate=False)
        except AlreadyDecided:
            logger.info("%s was decided by someone else first", join_request)

    run_retrying(
        self,
        deny,
        on_give_up=lambda error: logger.error("%s not denied: %s", join_request, error),
    )


def _reply(room: CallRoom, event: MembershipEvent, text: str) -> None:
    """Answer the sender in the room (a command: as a reply to it), after commit."""
    reply_to = event.event_id if event.type == "m.room.message" else ""
    send_after_commit(
        reply_in_room, room.pk, event.event_id, reply_to, event.sender, text, event.room_id
    )


@shared_task(bind=True, max_retries=8)
def reply_in_room(
    self: Task,
    room_pk: int,
    answering: str,
    reply_to: str,
    sender: str,
    text: str,
    in_room: str = "",
) -> None:
    """GuestGate's bot answers a moderator's reaction or command (once: the transaction id
    comes from the event answered), in the room it was made in (``in_room``: the call room or
    its moderators' room)."""
    room = CallRoom.objects.filter(pk=room_pk).first()
    if room is None:
        return
    txn_id = "gg-reply-" + hashlib.sha256(answering.encode()).hexdigest()[:32]

    def send() -> None:
        with homeservers.main_bot() as bot:
            bot.send_notice(
                in_room or room.room_id,
                text,
                txn_id=txn_id,
                reply_to=reply_to or None,
                mentions=[sender],
            )

    run_retrying(
        self, send, on_give_up=lambda error: logger.error("no reply in %s: %s", room, error)
    )
