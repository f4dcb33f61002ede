"""Matrix identifiers: building, splitting and escaping them.

Spec: https://spec.matrix.org/v1.16/appendices/#identifier-grammar
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Localparts of user ids as the spec allows them for new users ("historical" ids are wider).
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# "@localpart:server.name" with an optional port; loose on purpose, for telling ids from text.
_USER_ID = re.compile(r"@[^\s:]+:[A-Za-z0-9.\-\[\]]+(:\d{1,5})?")


def escape(segment: str) -> str:
    """Escape one URL path segment (``!room:server``, ``@user:server``, ``#alias:server``)."""
    return quote(segment, safe="")


def make_user_id(localpart: str, server_name: str) -> str:
    """``@localpart:server_name``."""
    return f"@{localpart}:{server_name}"


def localpart(user_id: str) -> str:
    """The part of a user id between the sigil and the first colon."""
    if not user_id.startswith("@") or ":" not in user_id:
        raise ValueError("not a Matrix user id")
    return user_id[1:].split(":", 1)[0]


def server_name(identifier: str) -> str | None:
    """The server part of an id (None for room ids of room version 12, which have none)."""
    if ":" not in identifier:
        return None
    return identifier.split(":", 1)[1] or None


def is_valid_localpart(text: str) -> bool:
    """Whether `text` is a localpart the spec allows for a new user."""
    return bool(_LOCALPART.fullmatch(text)) and len(text) <= 255


def looks_like_user_id(text: str) -> bool:
    """Whether `text` contains something shaped like a Matrix user id."""
    return bool(_USER_ID.search(text))
