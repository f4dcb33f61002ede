"""Small immutable results of homeserver calls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Power level of a room creator in room versions where creators outrank everyone (v12+).
CREATOR_POWER_LEVEL = 2**63
# MatrixRTC's call membership, a state event per device (MSC3401/MSC4143; CALL-LAB §4).
CALL_MEMBER_EVENT = "org.matrix.msc3401.call.member"

#: Room versions (besides numbered versions 12 and later) whose creators have that power.
_PRIVILEGED_CREATOR_VERSIONS = frozenset({"org.matrix.hydra.11"})

#: A spec version of the form ``/versions`` lists since Matrix 1.1 (``v1.12``).
_VERSION = re.compile(r"v\d+\.\d+")


def creators_have_infinite_power(room_version: str | None) -> bool:
    """Whether room creators outrank every power level in this room version (MSC4289, v12).

    Spec: https://spec.matrix.org/v1.16/rooms/v12/
    """
    if room_version is None:
        return False
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version in _PRIVILEGED_CREATOR_VERSIONS


@dataclass(frozen=True, slots=True)
class Whoami:
    """Who an access token (or a masquerading appservice) acts as."""

    user_id: str
    device_id: str | None


@dataclass(frozen=True, slots=True)
class Versions:
    """The spec versions a homeserver supports, and the unstable features it announces.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientversions
    """

    versions: tuple[str, ...]
    unstable_features: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def newest(self) -> str | None:
        """The highest ``vX.Y`` version (the list's order is not promised), else the last one."""
        numbered = [v for v in self.versions if _VERSION.fullmatch(v)]
        if numbered:
            return max(numbered, key=lambda v: tuple(int(n) for n in v[1:].split(".")))
        return self.versions[-1] if self.versions else None


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's public profile, as the user's own homeserver tells it.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
    """

    user_id: str
    displayname: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True, repr=False)
class Session:
    """What a Matrix client needs to act as a user. The token never appears in a repr."""

    homeserver_url: str
    user_id: str
    device_id: str
    access_token: str

    def __repr__(self) -> str:
        return (
            f"Session(homeserver_url={self.homeserver_url!r}, user_id={self.user_id!r}, "
            f"device_id={self.device_id!r}, access_token='<hidden>')"
        )


@dataclass(frozen=True, slots=True)
class Member:
    """A user's membership of a room (``m.room.member`` state).

    ``sender`` is None when the homeserver returned only the event's content.
    """

    user_id: str
    membership: str
    displayname: str | None
    reason: str | None
    sender: str | None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """What GuestGate needs to know about a call room."""

    room_id: str
    name: str | None
    join_rule: str | None
    room_version: str | None
    creator: str | None


def _frozen_levels(value: object) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    levels = {key: _level(raw, None) for key, raw in value.items() if isinstance(key, str)}
    return MappingProxyType({key: level for key, level in levels.items() if level is not None})


def _level(value: object, default: int | None) -> int | None:
    """A power level as the spec allows it: an integer (older room versions: a numeric string)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


@dataclass(frozen=True, slots=True)
class PowerLevels:
    """A room's ``m.room.power_levels``, with the spec's defaults applied.

    ``creators`` are the users who outrank every level (room creators in room version 12 and
    later); they are not listed in ``users``.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#mroompower_levels
    """

    users: Mapping[str, int]
    users_default: int
    invite: int
    kick: int
    ban: int
    redact: int
    state_default: int
    events_default: int
    events: Mapping[str, int]
    creators: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_content(
        cls,
        content: Mapping[str, Any] | None,
        *,
        creator: str | None = None,
        creators: Iterable[str] = (),
    ) -> PowerLevels:
        """Build from an ``m.room.power_levels`` content, or from its absence.

        Args:
            content: The event's content, or None when the room has no power levels event.
            creator: The room creator; used only when `content` is None, where the spec gives
                the creator level 100 (and makes state events need level 0).
            creators: Creators with unlimited power (room version 12 and later).
        """
        privileged = frozenset(creators)
        if content is None:
            users = {creator: 100} if creator and creator not in privileged else {}
            return cls(
                users=MappingProxyType(users),
                users_default=0,
                invite=0,
                kick=50,
                ban=50,
                redact=50,
                state_default=0,
                events_default=0,
                events=MappingProxyType({}),
                creators=privileged,
            )

        def named(key: str, default: int) -> int:
            level = _level(content.get(key), default)
            return default if level is None else level

        return cls(
            users=_frozen_levels(content.get("users")),
            users_default=named("users_default", 0),
            invite=named("invite", 0),
            kick=named("kick", 50),
            ban=named("ban", 50),
            redact=named("redact", 50),
            state_default=named("state_default", 50),
            events_default=named("events_default", 0),
            events=_frozen_levels(content.get("events")),
            creators=privileged,
        )

    def level_of(self, user_id: str) -> int:
        """The user's power level in the room."""
        if user_id in self.creators:
            return CREATOR_POWER_LEVEL
        return self.users.get(user_id, self.users_default)

    def may_invite(self, user_id: str) -> bool:
        """Whether the user may invite (and so approve a knock)."""
        return self.level_of(user_id) >= self.invite

    def may_kick(self, user_id: str, target: str | None = None) -> bool:
        """Whether the user may kick (deny a knock); with `target`, also outranks that user."""
        return self.level_of(user_id) >= self.kick and self._outranks(user_id, target)

    def may_ban(self, user_id: str, target: str | None = None) -> bool:
        """Whether the user may ban; with `target`, also outranks that user."""
        return self.level_of(user_id) >= self.ban and self._outranks(user_id, target)

    def may_send_state(self, user_id: str, event_type: str) -> bool:
        """Whether the user may send a state event of this type."""
        return self.level_of(user_id) >= self.events.get(event_type, self.state_default)

    def _outranks(self, user_id: str, target: str | None) -> bool:
        return target is None or self.level_of(user_id) > self.level_of(target)


@dataclass(frozen=True, slots=True, repr=False)
class OpenIdToken:
    """A token a third party trades for the user's id at the user's homeserver (MSC1961).

    The fields are what Element Call sends a LiveKit JWT service as ``openid_token``.
    Spec: https://spec.matrix.org/v1.16/client-server-api/#openid
    """

    access_token: str
    token_type: str
    matrix_server_name: str
    expires_in: int

    def as_json(self) -> dict[str, object]:
        """The request body's ``openid_token``, as Element Call sends it (CALL-LAB §4)."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "matrix_server_name": self.matrix_server_name,
            "expires_in": self.expires_in,
        }

    def __repr__(self) -> str:
        return (
            f"OpenIdToken(matrix_server_name={self.matrix_server_name!r}, "
            f"expires_in={self.expires_in}, access_token='<hidden>')"
        )
