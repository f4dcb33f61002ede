"""May guests join a room's call, and who may change the room so that they can?

A guest joins the call by sending the state event ``org.matrix.msc3401.call.member``
(MatrixRTC), so the room's power levels must let a guest's level send it: Synapse refused a
guest's membership in a room with ``state_default: 50`` and no override (CALL-LAB §6).
Element's own call rooms set the override to 0.

Changing it means sending ``m.room.power_levels``. The spec's authorization rules ask the
sender for the level that event needs, and for a level at least the old and the new value of
every entry of ``events`` it changes (rooms v1+ auth rules, "m.room.power_levels"). GuestGate's
bot sends the change; a moderator may have it sent only if they could send it themselves.

Spec: https://spec.matrix.org/v1.16/rooms/v12/#authorization-rules
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from matrix import CALL_MEMBER_EVENT, PowerLevels

POWER_LEVELS_EVENT = "m.room.power_levels"


@dataclass(frozen=True)
class CallLevel:
    """A room's rule for joining its call, as it applies to guests."""

    guest_level: int  # users_default: every guest account is new, so listed nowhere
    needed: int  # the level the call member event needs (its override, or state_default)
    change_needs: int  # the level whoever changes the override must have

    @property
    def guests_may_join(self) -> bool:
        return self.guest_level >= self.needed


def call_level(levels: PowerLevels) -> CallLevel:
    """How the room's power levels treat a guest's call membership."""
    guest_level = levels.users_default
    current = levels.events.get(CALL_MEMBER_EVENT)
    change_needs = max(
        levels.events.get(POWER_LEVELS_EVENT, levels.state_default),
        guest_level,  # the new value
        current if current is not None else guest_level,  # the old value, if there is one
    )
    return CallLevel(
        guest_level=guest_level,
        needed=levels.state_default if current is None else current,
        change_needs=change_needs,
    )


def may_let_guests_join_call(levels: PowerLevels, user_id: str) -> bool:
    """Whether `user_id` may change the room so that guests may join its call."""
    return levels.level_of(user_id) >= call_level(levels).change_needs


def power_levels_letting_guests_join(content: Mapping[str, Any]) -> dict[str, Any]:
    """The room's ``m.room.power_levels`` content with the call member event at the guests'
    level; every other entry as it was."""
    levels = PowerLevels.from_content(content)
    events = content.get("events")
    return {
        **content,
        "events": {
            **(events if isinstance(events, Mapping) else {}),
            CALL_MEMBER_EVENT: levels.users_default,
        },
    }
