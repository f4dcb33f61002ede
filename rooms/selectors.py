"""Reads of the rooms app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, Prefetch, Q
from django.utils.translation import gettext, gettext_lazy

from accounts.selectors import guest_account_session
from ops.workers import workers_running
from rooms.invite_links import invite_link_state, invite_link_undo_possible
from rooms.messages import BANNED_BEFORE, guest_sentence, room_problem_sentence
from rooms.models import AuditEntry, CallRoom, InviteLink, JoinRequest
from rooms.permissions import RoomRights, room_rights

Status = JoinRequest.Status

_TITLES = {
    Status.PROVISIONING: gettext_lazy("Creating your guest pass…"),
    Status.WAITING: gettext_lazy("Waiting for a moderator"),
    Status.INVITED: gettext_lazy("You have been let in"),
    Status.JOINING: gettext_lazy("You have been let in"),
    Status.JOINED: gettext_lazy("You are in the call"),
    Status.DENIED: gettext_lazy("You were not let in"),
    Status.BANNED: gettext_lazy("You cannot join this call"),
    Status.CANCELLED: gettext_lazy("You left the waiting room"),
    Status.FAILED: gettext_lazy("Something went wrong"),
    Status.EXPIRED: gettext_lazy("This guest pass has expired"),
    Status.REMOVED: gettext_lazy("You were removed from the call"),
}
# One sentence each: what the guest must know, and what they can do next.
_MESSAGES = {
    Status.PROVISIONING: gettext_lazy("This takes a moment."),
    Status.WAITING: gettext_lazy(
        "The moderators know you are here and will let you in. Keep this page open; it "
        "updates by itself."
    ),
    Status.INVITED: gettext_lazy("Joining the call…"),
    Status.JOINING: gettext_lazy("Joining the call…"),
    Status.JOINED: gettext_lazy("Open the call to take part."),
    Status.DENIED: gettext_lazy(
        "A moderator did not let you in; if you think that was a mistake, ask the person who "
        "invited you."
    ),
    Status.BANNED: gettext_lazy(
        "You cannot ask to join this call again; if you think that is a mistake, ask the "
        "person who invited you."
    ),
    Status.CANCELLED: gettext_lazy(
        "You stopped waiting; this invite link lets nobody in any more, so ask the person who "
        "invited you for a new one."
    ),
    Status.FAILED: "",  # the reason says what failed
    Status.EXPIRED: gettext_lazy(
        "Guest passes last a limited time; this invite link lets nobody in any more, so ask "
        "the person who invited you for a new one."
    ),
    Status.REMOVED: gettext_lazy(
        "A moderator removed you from the call; this invite link lets nobody in any more."
    ),
}
# The same, where the guest may ask again (``can_ask_again``): the button is the next action.
_MESSAGES_ASK_AGAIN = {
    Status.DENIED: gettext_lazy("A moderator did not let you in this time; you may ask again."),
    Status.CANCELLED: gettext_lazy("You stopped waiting; ask again whenever you are ready."),
    Status.EXPIRED: gettext_lazy(
        "Guest passes last a limited time; ask again for a new one to join the call."
    ),
    Status.REMOVED: gettext_lazy("A moderator removed you from the call; you may ask again."),
}
#: Where the lobby offers "Ask again". Not after a ban (Matrix keeps a banned guest out), nor
#: while a request is open or failed ("Try again" goes on with the same request).
ASK_AGAIN_AFTER = tuple(_MESSAGES_ASK_AGAIN)
#: Where the guest's name is worth saying ("You are joining as …"): before they are let in.
_NAME_SHOWN = (Status.PROVISIONING, Status.WAITING)
#: The statuses whose ``reason`` a moderator typed (when it has no ``reason_code``).
_MODERATOR_DECISIONS = (Status.DENIED, Status.BANNED, Status.REMOVED)


def join_request_for_lobby(public_id: str) -> JoinRequest | None:
    return (
        JoinRequest.objects.select_related("room", "guest", "invite_link")
        .filter(public_id=public_id)
        .first()
    )


def join_request_may_ask_again(join_request: JoinRequest, *, status: str | None = None) -> bool:
    """Whether the lobby offers "Ask again": after a denial, a removal, a cancel or an expired
    pass, not after a ban, and only while the invite link the guest came by still lets people
    in (not revoked, expired or used up): a denial is not a ban, and the moderators who want a
    guest to stay out ban them or revoke the link. ``status``: as the lobby shows it (a
    let-in guest whose pass ended: expired), else the request's."""
    link = join_request.invite_link
    return (
        (status or join_request.status) in ASK_AGAIN_AFTER
        and link is not None
        and invite_link_state(link) == "active"
    )


def _reason(join_request: JoinRequest, status: Status) -> tuple[str, bool]:
    """What the lobby says of why, and whether a moderator typed it (only then is it quoted as
    theirs: GuestGate's own words are never put in a moderator's mouth)."""
    if status != join_request.status:
        return "", False  # it was said of the request (let in), not of the account's end
    if join_request.reason_code == BANNED_BEFORE:
        return "", False  # the title says it already
    if join_request.reason_code:
        return guest_sentence(join_request.reason_code, join_request.reason), False
    typed = bool(join_request.reason) and status in _MODERATOR_DECISIONS
    return join_request.reason, typed


def _message(join_request: JoinRequest, status: Status, *, may_ask_again: bool) -> str:
    if may_ask_again:
        return str(_MESSAGES_ASK_AGAIN[status])
    if status == Status.JOINED and settings.CALL_MODE == "embedded":
        return gettext("The call is below, in this page.")
    if status == Status.PROVISIONING and not workers_running():
        return gettext(
            "Guest passes cannot be made right now: the service's background worker is not "
            "running. Your request is kept and goes on by itself once it is back."
        )
    if status == Status.PROVISIONING and join_request.attempts:
        return gettext("The server is slow to answer; still trying…")
    return str(_MESSAGES[status])


def lobby_state(join_request: JoinRequest) -> dict[str, Any]:
    """What the guest's lobby shows, as JSON for the live page and context for the template."""
    status = Status(join_request.status)
    session = None
    if status == Status.JOINED and join_request.guest is not None:
        session = guest_account_session(join_request.guest)
        if session is None:  # the account ended after the guest was let in
            status = Status.EXPIRED
    may_ask_again = join_request_may_ask_again(join_request, status=status)
    reason, moderator_said = _reason(join_request, status)
    state: dict[str, Any] = {
        "status": status.value,
        "title": str(_TITLES[status]),
        "message": _message(join_request, status, may_ask_again=may_ask_again),
        "reason": reason,
        "moderator_said": moderator_said,
        # A moderator's line to the waiting guests, as typed (the page shows it as text).
        "announcement": join_request.announcement if status in _NAME_SHOWN else "",
        "version": join_request.version,
        "room_name": join_request.room.display_name,
        "display_name": join_request.display_name,
        "show_name": status in _NAME_SHOWN,
        "can_cancel": status in (Status.PROVISIONING, Status.WAITING),
        "can_retry": status == Status.FAILED,
        "can_ask_again": may_ask_again,
        "session": None,
        "call_url": None,
    }
    if session is not None:
        via = settings.MAIN_HS_SERVER_NAME
        state["session"] = {
            "homeserverUrl": session.homeserver_url,
            "userId": session.user_id,
            "deviceId": session.device_id,
            "accessToken": session.access_token,
            "roomId": join_request.room.room_id,
            "via": [via],
        }
        state["call_url"] = settings.CALL_URL_TEMPLATE.format(
            room_id=quote(join_request.room.room_id, safe=""),
            via=quote(via, safe=""),
            homeserver=quote(session.homeserver_url, safe=""),
        )
    return state


@dataclass(frozen=True)
class RoomSummary:
    room: CallRoom
    rights: RoomRights
    waiting: int

    @property
    def problems(self) -> list[str]:
        """What keeps the room from admitting guests, in the reader's language."""
        return call_room_problems(self.room)


def call_room_problems(call_room: CallRoom) -> list[str]:
    """What keeps a room from admitting guests, in the reader's language."""
    return [room_problem_sentence(problem) for problem in call_room.problems]


def rooms_for_moderator(user: AbstractBaseUser | AnonymousUser) -> list[RoomSummary]:
    """The rooms this person may moderate, with how many are waiting in each."""
    rooms = CallRoom.objects.annotate(
        waiting=Count("join_requests", filter=Q(join_requests__status=Status.WAITING))
    ).order_by("name", "pk")
    summaries = [RoomSummary(room, room_rights(room, user), room.waiting) for room in rooms]
    return [summary for summary in summaries if summary.rights.see]


def room_queue(room: CallRoom) -> list[JoinRequest]:
    """Who is waiting (or still being set up), first come first."""
    return list(
        JoinRequest.objects.filter(room=room, status__in=[Status.PROVISIONING, Status.WAITING])
        .select_related("invite_link")
        .prefetch_related("call_presences")
        .order_by("created_at")
    )


def room_recent_decisions(room: CallRoom, *, limit: int = 15) -> list[JoinRequest]:
    """The latest decided requests, with their devices in the call (``JoinRequest.call``) and
    their guest accounts (a let-in guest's pass may have expired since)."""
    return list(
        JoinRequest.objects.filter(room=room)
        .exclude(status__in=[Status.PROVISIONING, Status.WAITING])
        .select_related("guest")
        .prefetch_related("call_presences")
        .order_by("-updated_at")[:limit]
    )


def room_guests_let_in(room: CallRoom) -> list[JoinRequest]:
    """Who is let in (or was removed from the call), with their devices in the call: the
    latest request of each, newest first."""
    return list(
        JoinRequest.objects.filter(room=room, status__in=[Status.JOINED, Status.REMOVED])
        .select_related("invite_link")
        .prefetch_related("call_presences")
        .order_by("-updated_at")
    )


def room_queue_token(room: CallRoom) -> str:
    """Changes whenever any join request of the room changes: what the dashboard waits on."""
    latest = JoinRequest.objects.filter(room=room).aggregate(
        changed=Max("updated_at"), count=Count("pk")
    )
    changed = latest["changed"].timestamp() if latest["changed"] else 0
    return f"{latest['count']}-{changed:.6f}"


def room_audit(room: CallRoom, *, query: str = "", limit: int = 200) -> list[AuditEntry]:
    entries = AuditEntry.objects.filter(room=room)
    if query:
        entries = entries.filter(
            Q(subject__icontains=query)
            | Q(subject_name__icontains=query)
            | Q(actor__icontains=query)
            | Q(reason__icontains=query)
        )
    return list(entries[:limit])


@dataclass(frozen=True)
class LinkSummary:
    link: InviteLink
    state: str
    guests: list[JoinRequest]

    @property
    def can_show_again(self) -> bool:
        """Its token is kept (links made before tokens were kept cannot be shown again)."""
        return bool(self.link.token_encrypted)

    @property
    def undo(self) -> bool:
        """Revoked moments ago: its moderators may still take that back."""
        return invite_link_undo_possible(self.link)


def room_invite_links(room: CallRoom) -> list[LinkSummary]:
    """The room's invite links, newest first, each with its state and who came through it."""
    links = (
        InviteLink.objects.filter(room=room)
        .select_related("retention_policy")
        .prefetch_related(
            Prefetch("join_requests", queryset=JoinRequest.objects.order_by("created_at"))
        )
        .order_by("-created_at")
    )
    return [
        LinkSummary(link, invite_link_state(link), list(link.join_requests.all())) for link in links
    ]
