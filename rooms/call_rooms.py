"""Call rooms of the main homeserver: created by GuestGate's bot in one step, or registered
when they exist already; checked that they work; their settings."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import RetentionPolicy
from accounts.services import default_policy
from guestgate import homeservers
from guestgate.errors import GuestGateError
from guestgate.retrying import run_retrying
from matrix import (
    CALL_MEMBER_EVENT,
    Forbidden,
    MatrixClient,
    MatrixError,
    NotFound,
    PowerLevels,
    RoomInfo,
)
from rooms import messages
from rooms.call_levels import (
    POWER_LEVELS_EVENT,
    call_level,
    power_levels_letting_guests_join,
)
from rooms.messages import room_problem
from rooms.models import AuditEntry, CallRoom

logger = logging.getLogger(__name__)

KNOCK_RULES = ("knock", "knock_restricted")
ENCRYPTION_EVENT = "m.room.encryption"


def encryption_on(content: Mapping[str, object] | None) -> bool:
    """Whether an ``m.room.encryption`` content turns encryption on: it names an algorithm.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#mroomencryption
    """
    return bool(content and isinstance(content.get("algorithm"), str) and content["algorithm"])


class RoomNotFound(GuestGateError):
    code = "room.not_found"
    status = 404


class BotMayNotChangeRoom(GuestGateError):
    code = "room.bot_may_not_change"
    status = 409


class RoomNotCreated(GuestGateError):
    code = "room.not_created"
    status = 502


#: The room version of new call rooms: the current one (creators outrank every level).
CALL_ROOM_VERSION = "12"

#: The levels events of new call rooms need: Synapse's defaults for room version 12 (the room's
#: creator, GuestGate's bot, alone may replace the room), and guests (level 0, every guest
#: account being new) may send their call membership (rooms.call_levels). Sent whole in the
#: createRoom request, where ``events`` replaces the server's defaults rather than merging.
CALL_ROOM_EVENT_LEVELS: dict[str, int] = {
    "m.room.name": 50,
    "m.room.topic": 50,
    "m.room.avatar": 50,
    "m.room.canonical_alias": 50,
    "m.room.join_rules": 100,
    "m.room.power_levels": 100,
    "m.room.history_visibility": 100,
    "m.room.encryption": 100,
    "m.room.server_acl": 100,
    "m.room.tombstone": 150,
    CALL_MEMBER_EVENT: 0,
}


@dataclass(frozen=True)
class RoomCheck:
    name: str
    problems: list[dict[str, object]]  # rooms.messages.room_problem
    protected_names: list[str]
    fixable_join_rule: bool  # the bot may set the join rule to knock itself
    power_levels: dict[str, object] = field(default_factory=dict)
    creators: list[str] = field(default_factory=list)
    encrypted: bool = False


def call_room_register(*, room: str, registered_by: str) -> CallRoom:
    """Register a room by id or alias: the bot joins it, then the room is checked.

    The room is recorded even when something is wrong, with the problems in words the
    moderator can act on; only a ready room admits guests.
    """
    with homeservers.main_bot() as bot:
        room_id = _room_id(bot, room)
        check = _check(bot, room_id)
    return _save(room_id, check, registered_by=registered_by)


def call_room_create(*, name: str, topic: str, admin: str) -> CallRoom:
    """Have GuestGate's bot create a call room on main and register it, in one step.

    The room: the current room version, join rule knock ("ask to join"), guests allowed to
    send their call membership, ``admin`` (a Matrix id) invited at level 100, the name and
    topic given. It is one createRoom request, so main either makes all of it or nothing
    (`RoomNotCreated`). Then the room is checked like a registered one, from main's state.
    A room main made but GuestGate could not check is not registered (`RoomNotCreated`,
    naming the room so that it can be registered by its id).

    Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3createroom
    """
    try:
        with homeservers.main_bot() as bot:
            room_id = bot.create_room(
                name=name,
                topic=topic or None,
                join_rule="knock",
                room_version=CALL_ROOM_VERSION,
                invite=[admin],
                power_level_content_override={
                    "users": {admin: 100},
                    "users_default": 0,
                    "events_default": 0,
                    "state_default": 50,
                    "invite": 50,  # not 0 as in the private_chat preset: guests invite no one
                    "kick": 50,
                    "ban": 50,
                    "redact": 50,
                    "events": CALL_ROOM_EVENT_LEVELS,
                },
            )
    except MatrixError as error:
        raise RoomNotCreated(
            gettext("The main homeserver did not create the room: %(error)s")
            % {"error": error.message}
        ) from error
    try:
        with homeservers.main_bot() as bot:
            check = _check(bot, room_id)
    except MatrixError as error:
        logger.warning("room %s was created but could not be checked: %s", room_id, error)
        raise RoomNotCreated(
            gettext(
                "The room was made on the main homeserver, but GuestGate could not check it "
                "(%(error)s). Register it with its id once the server answers: %(room_id)s"
            )
            % {"error": error.message, "room_id": room_id}
        ) from error
    return _save(room_id, check, registered_by=admin)


def call_room_set_policy(call_room: CallRoom, policy: RetentionPolicy | None, *, by: str) -> bool:
    """The room's default retention policy (None: the default policy), audited as ``by``'s;
    False if it was that already. Links naming a policy of their own keep it; accounts follow
    the change at the next sweep."""
    with transaction.atomic():
        current = (
            CallRoom.objects.select_for_update(of=("self",))
            .select_related("retention_policy")
            .get(pk=call_room.pk)
        )
        if current.retention_policy_id == (policy.pk if policy else None):
            return False
        CallRoom.objects.filter(pk=call_room.pk).update(retention_policy=policy)
        AuditEntry.objects.create(
            room=current,
            action=AuditEntry.Action.POLICY_CHANGED,
            actor=by,
            subject=current.room_id,
            subject_name=str(current),
            reason=f"{_policy_name(current.retention_policy)} → {_policy_name(policy)}",
        )
    call_room.retention_policy = policy
    return True


def _policy_name(policy: RetentionPolicy | None) -> str:
    """A room's policy as the audit log names it; the default one, in brackets, when none."""
    return policy.name if policy is not None else f"({default_policy().name})"


def call_room_recheck(call_room: CallRoom) -> CallRoom:
    with homeservers.main_bot() as bot:
        check = _check(bot, call_room.room_id)
    return _save(call_room.room_id, check, registered_by=call_room.registered_by)


@shared_task(bind=True, max_retries=8)
def recheck_call_room(self: Task, call_room_pk: int) -> None:
    """Main pushed a change of a call room's power levels or join rule (its admin, in a Matrix
    client): check the room again, so that what they fixed lets guests in, and what they broke
    shows, without anyone pressing "Check again"."""
    call_room = CallRoom.objects.filter(pk=call_room_pk).first()
    if call_room is not None:
        run_retrying(self, lambda: call_room_recheck(call_room), on_give_up=_stays_as_checked)


def _stays_as_checked(error: MatrixError) -> None:
    """Main did not answer in time: the room keeps its last check (the page can check again)."""


def call_room_fix_join_rule(call_room: CallRoom) -> CallRoom:
    """Set the room's join rule to knock ("ask to join"), when the bot's power allows it."""
    with homeservers.main_bot() as bot:
        bot.set_state(call_room.room_id, "m.room.join_rules", {"join_rule": "knock"})
    return call_room_recheck(call_room)


def call_room_let_guests_join_call(call_room: CallRoom) -> CallRoom:
    """Let guests send their call membership: the bot sets the call member event's level in
    ``m.room.power_levels`` to the guests' level (CALL-LAB §6), when its power allows it.

    The room's current power levels are read from main, not from GuestGate's copy: the change
    keeps every other entry as main has it. Raises `BotMayNotChangeRoom` (the room is checked
    again first, so its page says what the room's admin must do) when the bot may not.
    """
    with homeservers.main_bot() as bot:
        content = bot.state_event(call_room.room_id, POWER_LEVELS_EVENT) or {}
        levels = bot.power_levels(call_room.room_id)
        call = call_level(levels)
        bot_may = levels.level_of(homeservers.main_bot_user_id()) >= call.change_needs
        if bot_may and not call.guests_may_join:
            bot.set_state(
                call_room.room_id, POWER_LEVELS_EVENT, power_levels_letting_guests_join(content)
            )
    call_room = call_room_recheck(call_room)
    if not bot_may and not call.guests_may_join:
        raise BotMayNotChangeRoom(
            gettext(
                "GuestGate's bot may not change the room's permissions: the room's admin must "
                "(the room's problems say what to change)."
            )
        )
    return call_room


def call_room_bot_fixes(call_room: CallRoom) -> frozenset[str]:
    """The room's problems GuestGate's bot may fix by itself, as the room page's ``fix``
    values (beside the join rule, which the page offers whenever the moderator may set it)."""
    codes = {problem.get("code") for problem in call_room.problems if isinstance(problem, dict)}
    return frozenset({"call_level"} if messages.GUESTS_MAY_NOT_JOIN_CALL in codes else ())


def call_room_forget(call_room: CallRoom) -> None:
    """Undo a registration that was refused (the person who asked may not moderate the room):
    GuestGate forgets the room and its bot leaves it, so nothing of the attempt remains.

    A room its bot cannot leave (main unavailable) is logged; the row is gone either way.
    """
    room_id = call_room.room_id
    call_room.delete()
    try:
        with homeservers.main_bot() as bot:
            bot.leave(room_id, reason="Registration with GuestGate refused.")
    except (Forbidden, NotFound):
        return  # not in the room (any more): nothing to leave
    except MatrixError as error:
        logger.warning(
            "the bot could not leave %s after a refused registration: %s", room_id, error
        )


def _room_id(bot: MatrixClient, room: str) -> str:
    room = room.strip()
    if room.startswith("#"):
        try:
            room_id, _servers = bot.resolve_alias(room)
        except NotFound:
            raise RoomNotFound(
                gettext("No room has the address %(room)s.") % {"room": room}
            ) from None
        return room_id
    if not room.startswith("!"):
        raise RoomNotFound(
            gettext("Give the room's id (starting with !) or address (starting with #).")
        )
    return room


def _check(bot: MatrixClient, room_id: str) -> RoomCheck:
    bot_id = homeservers.main_bot_user_id()
    try:
        bot.ensure_joined(room_id, via=[settings.MAIN_HS_SERVER_NAME])
    except (Forbidden, NotFound):
        return RoomCheck(
            name="",
            problems=[room_problem(messages.BOT_NOT_IN_ROOM, bot_id=bot_id)],
            protected_names=[],
            fixable_join_rule=False,
        )
    info = bot.room_info(room_id)
    levels = bot.power_levels(room_id)
    levels_content = bot.state_event(room_id, "m.room.power_levels") or {}
    problems = _problems(info, levels, bot_id)
    fixable = info.join_rule not in KNOCK_RULES and levels.may_send_state(
        bot_id, "m.room.join_rules"
    )
    return RoomCheck(
        name=info.name or "",
        problems=problems,
        protected_names=_moderator_names(bot, room_id, levels),
        fixable_join_rule=fixable and _supports_knock(info.room_version),
        power_levels=dict(levels_content),
        creators=sorted(levels.creators),
        encrypted=encryption_on(bot.state_event(room_id, ENCRYPTION_EVENT)),
    )


def _problems(info: RoomInfo, levels: PowerLevels, bot_id: str) -> list[dict[str, object]]:
    problems = []
    if not _supports_knock(info.room_version):
        problems.append(room_problem(messages.NO_KNOCK_VERSION, version=info.room_version))
    if info.join_rule not in KNOCK_RULES:
        problems.append(room_problem(messages.NOT_KNOCK_RULE, join_rule=info.join_rule))
    if not levels.may_invite(bot_id):
        problems.append(
            room_problem(messages.BOT_MAY_NOT_INVITE, bot_id=bot_id, level=levels.invite)
        )
    if not levels.may_kick(bot_id):
        problems.append(room_problem(messages.BOT_MAY_NOT_KICK, bot_id=bot_id, level=levels.kick))
    problems.extend(_call_problems(levels, bot_id))
    return problems


def _call_problems(levels: PowerLevels, bot_id: str) -> list[dict[str, object]]:
    """Guests must be allowed to send their call membership, or the call refuses them."""
    call = call_level(levels)
    if call.guests_may_join:
        return []
    values: dict[str, object] = {
        "event": CALL_MEMBER_EVENT,
        "level": call.needed,
        "guest_level": call.guest_level,
    }
    bot_level = levels.level_of(bot_id)
    if bot_level >= call.change_needs:
        return [room_problem(messages.GUESTS_MAY_NOT_JOIN_CALL, **values)]
    return [
        room_problem(
            messages.GUESTS_MAY_NOT_JOIN_CALL_ADMIN,
            **values,
            bot_id=bot_id,
            bot_level=bot_level,
            change_level=call.change_needs,
        )
    ]


# ASCII digits only: str.isdigit also takes "²" and "①", which int() refuses.
_ROOM_VERSION_NUMBER = re.compile(r"[0-9]{1,9}")


def _supports_knock(room_version: str | None) -> bool:
    if room_version is None:
        return True  # unknown: the knock itself will tell
    if not _ROOM_VERSION_NUMBER.fullmatch(room_version):
        return True  # an unstable or future version ("org.matrix.hydra.11")
    return int(room_version) >= 7


def _moderator_names(bot: MatrixClient, room_id: str, levels: PowerLevels) -> list[str]:
    names: list[str] = []
    for member in bot.members(room_id, membership="join"):
        if levels.may_invite(member.user_id):
            names.append(member.user_id)
            if member.displayname:
                names.append(member.displayname)
    return names


def _save(room_id: str, check: RoomCheck, *, registered_by: str) -> CallRoom:
    checked = {
        "name": check.name,
        "status": CallRoom.Status.PROBLEM if check.problems else CallRoom.Status.READY,
        "problems": check.problems,
        "protected_names": check.protected_names,
        "power_levels": check.power_levels,
        "creators": check.creators,
        "encrypted": check.encrypted,
        "checked_at": timezone.now(),
    }
    call_room, _ = CallRoom.objects.update_or_create(
        room_id=room_id,
        defaults=checked,
        create_defaults={**checked, "registered_by": registered_by},
    )
    return call_room
