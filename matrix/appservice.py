"""The appservice side: events the homeserver pushes to GuestGate, and its authentication.

Spec: https://spec.matrix.org/v1.16/application-service-api/#put_matrixappv1transactionstxnid
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

logger = logging.getLogger("matrix")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One room event of a pushed transaction (a client-format event)."""

    event_id: str
    room_id: str
    type: str
    sender: str
    state_key: str | None
    content: Mapping[str, Any]
    origin_server_ts: int | None = None
    unsigned: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def membership(self) -> str | None:
        """The new membership, for an ``m.room.member`` event."""
        if self.type != "m.room.member":
            return None
        membership = self.content.get("membership")
        return membership if isinstance(membership, str) else None

    @property
    def prev_membership(self) -> str | None:
        """The membership this event replaced, when the homeserver says (``unsigned``)."""
        if self.type != "m.room.member":
            return None
        prev_content = self.unsigned.get("prev_content")
        if not isinstance(prev_content, Mapping):
            return None
        membership = prev_content.get("membership")
        return membership if isinstance(membership, str) else None

    @property
    def reason(self) -> str | None:
        """The ``reason`` of a membership change (a knock's message, a kick's reason)."""
        reason = self.content.get("reason")
        return reason if isinstance(reason, str) else None


class InvalidParameter(ValueError):
    """A value of the right type that no homeserver sends (an id longer than the spec allows,
    a timestamp out of range): ``M_INVALID_PARAM``."""


#: Identifiers are at most 255 bytes (spec, "Identifier grammar").
MAX_ID_LENGTH = 255
#: Milliseconds since 1970 that fit a signed 64-bit integer.
MAX_TIMESTAMP = 2**63 - 1


def parse_transaction(body: object) -> list[RoomEvent]:
    """The room events of a transaction body ``{"events": [...]}``.

    Raises:
        ValueError: The body is not a transaction, or an event lacks its ``event_id``,
            ``room_id`` or ``type``. Events that have those but an unexpected shape otherwise
            (no sender, content that is not an object) are skipped.
        InvalidParameter: An identifier or a timestamp no homeserver would send.
    """
    if not isinstance(body, Mapping):
        raise ValueError("transaction body is not a JSON object")
    events = body.get("events")
    if not isinstance(events, list):
        raise ValueError("transaction has no 'events' list")
    parsed = []
    for index, raw in enumerate(events):
        if not isinstance(raw, Mapping):
            raise ValueError(f"event {index} is not a JSON object")
        for key in ("event_id", "room_id", "type"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ValueError(f"event {index} has no '{key}'")
        _refuse_out_of_range(index, raw)
        event = room_event(raw)
        if event is None:
            logger.warning("skipping event %s of unexpected shape", raw["event_id"])
            continue
        parsed.append(event)
    return parsed


def _refuse_out_of_range(index: int, raw: Mapping[str, Any]) -> None:
    for key in ("event_id", "room_id", "sender", "state_key"):
        value = raw.get(key)
        if isinstance(value, str) and len(value.encode()) > MAX_ID_LENGTH:
            raise InvalidParameter(f"event {index}: '{key}' is longer than {MAX_ID_LENGTH} bytes")
    timestamp = raw.get("origin_server_ts")
    if isinstance(timestamp, int) and not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidParameter(f"event {index}: 'origin_server_ts' is out of range")


def room_event(raw: Mapping[str, Any]) -> RoomEvent | None:
    """A client-format event as a RoomEvent; None when its shape is unexpected."""
    sender = raw.get("sender")
    content = raw.get("content", {})
    state_key = raw.get("state_key")
    if not isinstance(sender, str) or not isinstance(content, Mapping):
        return None
    if state_key is not None and not isinstance(state_key, str):
        return None
    timestamp = raw.get("origin_server_ts")
    unsigned = raw.get("unsigned")
    return RoomEvent(
        event_id=raw["event_id"],
        room_id=raw["room_id"],
        type=raw["type"],
        sender=sender,
        state_key=state_key,
        content=MappingProxyType(dict(content)),
        origin_server_ts=(
            timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None
        ),
        unsigned=MappingProxyType(dict(unsigned)) if isinstance(unsigned, Mapping) else _EMPTY,
    )


def tokens_match(given: str | None, expected: str) -> bool:
    """Whether a presented token equals the expected one, in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None.

    Spec: https://spec.matrix.org/v1.16/application-service-api/#authorization
    """
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
