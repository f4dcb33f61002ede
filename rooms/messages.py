"""GuestGate's own sentences about a join request or a call room, stored as codes.

A background task has no reader, and a row is read by many (guests and moderators in other
languages, the API, the audit log), so rows keep a code and its values; the sentence is made
in the reader's language when shown. A moderator's own words are stored as typed, apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.translation import gettext, gettext_noop

from matrix import MatrixError

# A join request's ``reason_code``: what GuestGate tells the guest (``reason`` holds the values).
SERVER_UNAVAILABLE = "server_unavailable"
SERVER_FAILED = "server_failed"
BANNED_BEFORE = "banned_before"
MAIN_UNREACHABLE = "main_unreachable"

#: The ``code`` of the error GuestGate gives up with when the call's (main) server is away.
MAIN_UNREACHABLE_ERROR = "guestgate.main_unreachable"

_GUEST_SENTENCES = {
    SERVER_UNAVAILABLE: gettext_noop(
        "The server is not answering at the moment, so your guest pass could not be "
        "finished. Please try again in a minute."
    ),
    SERVER_FAILED: gettext_noop("Something went wrong on the server (%(code)s). Please try again."),
    BANNED_BEFORE: gettext_noop("You cannot join this call."),
    MAIN_UNREACHABLE: gettext_noop(
        "The call's server cannot be reached at the moment, so you could not ask to join yet. "
        "“Try again” works as soon as it is back; that may take a few minutes."
    ),
}

# A call room's problems: ``{"code": …, "values": {…}}`` each.
BOT_NOT_IN_ROOM = "bot_not_in_room"
NO_KNOCK_VERSION = "no_knock_version"
NOT_KNOCK_RULE = "not_knock_rule"
BOT_MAY_NOT_INVITE = "bot_may_not_invite"
BOT_MAY_NOT_KICK = "bot_may_not_kick"
#: Guests could not send their call membership; GuestGate's bot may change that.
GUESTS_MAY_NOT_JOIN_CALL = "guests_may_not_join_call"
#: The same, and the bot may not change it: the room's admin must.
GUESTS_MAY_NOT_JOIN_CALL_ADMIN = "guests_may_not_join_call_admin"

_ROOM_PROBLEMS = {
    BOT_NOT_IN_ROOM: gettext_noop(
        "GuestGate's bot %(bot_id)s is not in the room. Invite it to the room "
        "(it joins by itself), then check again."
    ),
    NO_KNOCK_VERSION: gettext_noop(
        "The room is of version %(version)s, which does not support asking to "
        "join. Upgrade the room to version 7 or newer (in Element: /upgraderoom 12)."
    ),
    NOT_KNOCK_RULE: gettext_noop(
        "The room's join rule is “%(join_rule)s”. Guests can only ask to join a room "
        "set to “Ask to join” (join rule knock)."
    ),
    BOT_MAY_NOT_INVITE: gettext_noop(
        "GuestGate's bot %(bot_id)s may not invite: give it power level %(level)s or more."
    ),
    BOT_MAY_NOT_KICK: gettext_noop(
        "GuestGate's bot %(bot_id)s may not remove people (needed to deny a "
        "guest): give it power level %(level)s or more."
    ),
    GUESTS_MAY_NOT_JOIN_CALL: gettext_noop(
        "Guests could not join the call: joining sends “%(event)s”, which needs power level "
        "%(level)s, and guests have %(guest_level)s. GuestGate's bot can change that for a "
        "moderator whose power allows changing the room's permissions: “Let guests join the "
        "call”. In Element: Room settings → Roles & permissions → “Join Element Call calls” "
        "→ Default."
    ),
    GUESTS_MAY_NOT_JOIN_CALL_ADMIN: gettext_noop(
        "Guests could not join the call: joining sends “%(event)s”, which needs power level "
        "%(level)s, and guests have %(guest_level)s. GuestGate's bot %(bot_id)s (power level "
        "%(bot_level)s) may not change that: it needs %(change_level)s. A room admin can: in "
        "Element, Room settings → Roles & permissions → “Join Element Call calls” → Default; "
        'or add "%(event)s": %(guest_level)s to "events" in the room\'s '
        "m.room.power_levels. Then check again."
    ),
}


def failure_code(error: MatrixError) -> str:
    """The guest's message for a step GuestGate gave up on."""
    if error.code == MAIN_UNREACHABLE_ERROR:
        return MAIN_UNREACHABLE
    return SERVER_UNAVAILABLE if error.retryable else SERVER_FAILED


def guest_sentence(code: str, detail: str) -> str:
    """GuestGate's words to a guest in the active language; ``detail`` fills ``%(code)s``."""
    if code not in _GUEST_SENTENCES:
        return detail
    sentence = gettext(_GUEST_SENTENCES[code])
    return sentence % {"code": detail} if "%(code)s" in sentence else sentence


def room_problem(code: str, **values: object) -> dict[str, object]:
    """A call room's problem as stored."""
    return {"code": code, "values": values}


def room_problem_sentence(problem: object) -> str:
    """A stored problem in the active language (one this version does not know: as stored)."""
    if not isinstance(problem, Mapping) or problem.get("code") not in _ROOM_PROBLEMS:
        return str(problem)
    return gettext(_ROOM_PROBLEMS[str(problem["code"])]) % dict(problem.get("values") or {})
