# ruff: noqa: RUF001  (the look-alike table below is made of ambiguous letters on purpose)
"""Cleaning and checking the display name a guest types.

The name ends up in Matrix clients of the main homeserver next to real members' names, so it
must not be able to pass for one of them, hide text (bidi overrides, zero-width characters) or
look like a Matrix id. See DESIGN.md, "Bad input".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.translation import gettext

from matrix.ids import contains_matrix_id

MAX_LENGTH = 64
#: Longer input is refused before cleaning (which costs per character), with the same message:
#: room enough for a name of MAX_LENGTH among invisible characters that cleaning removes.
MAX_TYPED_LENGTH = 1000

# Unicode categories removed outright: controls, format characters (bidi overrides and
# isolates, zero-width joiners and spaces, soft hyphen, BOM), surrogates, private use and
# unassigned code points.
_REMOVED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SPACE_CATEGORIES = {"Zs", "Zl", "Zp"}

_SERVER_SHAPED = re.compile(r"[a-z0-9._=/+\-]+:[a-z0-9\-]+(\.[a-z0-9\-]+)+(:\d+)?")

# Letters that are commonly swapped in to imitate a name; applied after NFKC and casefolding.
_CONFUSABLES = str.maketrans(
    {
        "0": "o",
        "1": "l",
        "i": "l",
        "|": "l",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "$": "s",
        "@": "a",
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "х": "x",
        "у": "y",
        "і": "l",
        "ӏ": "l",
        "м": "m",
        "к": "k",
        "н": "h",
        "в": "b",
        "т": "t",
        "ѕ": "s",
        "ј": "j",
        "ο": "o",
        "ν": "v",
        "α": "a",
        "ρ": "p",
        "κ": "k",
    }
)


class DisplayNameRejected(ValueError):
    """The name cannot be used; ``message`` says why in words for the guest."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CleanName:
    typed: str  # what the guest will see as their name
    shown: str  # the display name on Matrix: typed name plus the guest suffix


def clean_display_name(raw: str, *, suffix: str, protected_names: Iterable[str] = ()) -> CleanName:
    """Normalise ``raw`` and check it; raise DisplayNameRejected with a clear message.

    Args:
        raw: what the guest typed.
        suffix: appended to every guest's Matrix display name, e.g. " (Guest)".
        protected_names: display names and Matrix ids of the room's moderators and members
            that a guest may not imitate.
    """
    if len(raw) > MAX_TYPED_LENGTH:
        raise _too_long()
    name = unicodedata.normalize("NFC", raw)
    name = "".join(_keep(ch) for ch in name)
    name = " ".join(name.split())
    if not name:
        raise DisplayNameRejected("name.empty", gettext("Please type the name others should see."))
    if len(name) > MAX_LENGTH:
        raise _too_long()
    if _looks_like_matrix_id(name):
        raise DisplayNameRejected(
            "name.matrix_id",
            gettext("Please type a name, not a Matrix address (like @name:server)."),
        )
    skeleton = _skeleton(name)
    if skeleton in {_skeleton(p) for p in _protected_variants(protected_names)} - {""}:
        raise DisplayNameRejected(
            "name.imitates_member",
            gettext(
                "That name is too close to the name of someone in this room. "
                "Please use another one, for example with your surname."
            ),
        )
    return CleanName(typed=name, shown=f"{name}{suffix}")


def _too_long() -> DisplayNameRejected:
    return DisplayNameRejected(
        "name.too_long",
        gettext("Please keep the name to %(max)d characters or fewer.") % {"max": MAX_LENGTH},
    )


def _keep(ch: str) -> str:
    category = unicodedata.category(ch)
    if category in _REMOVED_CATEGORIES:
        return ""
    if category in _SPACE_CATEGORIES:
        return " "
    return ch


def _looks_like_matrix_id(name: str) -> bool:
    folded = name.casefold()
    return contains_matrix_id(folded) or bool(_SERVER_SHAPED.fullmatch(folded))


def _skeleton(text: str) -> str:
    """A rough form for comparing names: case, accents, look-alike letters and spacing ignored."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    folded = folded.translate(_CONFUSABLES)
    return "".join(ch for ch in folded if ch.isalnum())


def _protected_variants(names: Iterable[str]) -> Iterable[str]:
    """Each protected name, and for a Matrix id also its localpart (@mona:x → mona)."""
    for name in names:
        yield name
        if name.startswith("@") and ":" in name:
            yield name[1:].split(":", 1)[0]
