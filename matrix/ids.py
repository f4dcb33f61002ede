"""Matrix identifiers: building, splitting and escaping them.

Spec: https://spec.matrix.org/v1.16/appendices/#identifier-grammar
"""

from __future__ import annotations

import re
from urllib.parse import quote

# A sigil (user, room, alias, event, group), a local part, a colon and a server part; loose on
# purpose, for telling ids from text.
_ID_INSIDE = re.compile(r"[@!#+$][^\s:]+:[^\s]+")


def escape(segment: str) -> str:
    """Escape one URL path segment (``!room:server``, ``@user:server``, ``#alias:server``)."""
    return quote(segment, safe="")


def make_user_id(localpart: str, server_name: str) -> str:
    """``@localpart:server_name``."""
    return f"@{localpart}:{server_name}"


def server_name(identifier: str) -> str | None:
    """The server part of an id (None for room ids of room version 12, which have none)."""
    if ":" not in identifier:
        return None
    return identifier.split(":", 1)[1] or None


def contains_matrix_id(text: str) -> bool:
    """Whether ``text`` contains something shaped like a Matrix identifier (``@user:server``,
    ``#alias:server``, ``!room:server``…)."""
    return bool(_ID_INSIDE.search(text))
