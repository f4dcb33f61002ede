"""Sentences kept in English on a row and shown in the reader's language.

A background task has no reader, and a row is read by many (moderators in other languages, the
API, the audit log, ``manage.py`` commands), so sentences stored on rows are English. Their
templates are marked with ``gettext_noop`` and filled with ``%(name)s`` values;
``stored_sentence_translated`` finds the template a stored sentence came from, takes back the
values and fills them into the template's translation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from django.utils.translation import gettext

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    seen: set[str] = set()
    for index, piece in enumerate(_PLACEHOLDER.split(template)):
        if index % 2 == 0:
            parts.append(re.escape(piece))
        elif piece in seen:
            parts.append(f"(?P={piece})")
        else:
            seen.add(piece)
            parts.append(f"(?P<{piece}>.+?)")
    return re.compile("".join(parts), re.DOTALL)


def stored_sentence_translated(text: str, templates: Iterable[str]) -> str:
    """``text`` in the active language if it was made from one of ``templates``, else as is."""
    for template in templates:
        match = _pattern(template).fullmatch(text)
        if match:
            return gettext(template) % match.groupdict()
    return text
