"""The code printed on a poster under its QR code, as a person types it back on the home page.

A poster prints the invite token in groups of five (``rooms.invite_links.grouped``):
``abcde-fghij-klmno-pqrst-uvwxyz``. People type it with or without the dashes, with spaces,
in capitals, with the dash their keyboard or phone makes (an en dash, a minus sign), or paste
the whole link. All of these give the same token back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The tokens ``guestgate.crypto.new_invite_token`` makes: 26 characters of base32.
TOKEN_LENGTH = 26
_TOKEN = re.compile(rf"[a-z2-7]{{{TOKEN_LENGTH}}}")
#: What people put between the groups: whitespace of any kind and dashes of any kind.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212_.\u00b7]+")
#: Base32 has no 0, 1, 8 or 9; a 0 read off paper is an O, an 8 a B. (1 could be I or L: left.)
_LOOKALIKES = str.maketrans({"0": "o", "8": "b"})


@dataclass(frozen=True)
class TypedCode:
    """What was typed, read back: ``token`` when it has the shape of one, else how long it was."""

    token: str | None
    length: int


def invite_code_read(typed: str) -> TypedCode:
    """The invite token in ``typed`` (a code from a poster, or a pasted link), or None."""
    text = typed.strip()
    if "/j/" in text:  # a pasted link: the token is its last path segment
        text = text.rsplit("/j/", 1)[1].split("?", 1)[0].split("#", 1)[0]
    code = _SEPARATORS.sub("", text).lower().translate(_LOOKALIKES)
    return TypedCode(code if _TOKEN.fullmatch(code) else None, len(code))
