"""Template helpers every page shares: the page's language with the viewer's region, and
times relative to now ("just now", "2 min ago") that static/guestgate/localtime.js keeps
current in the browser."""

from __future__ import annotations

import re
from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import get_language, gettext
from django.utils.translation.trans_real import parse_accept_lang_header

register = template.Library()

#: A language tag as browsers send it: en, en-GB, zh-Hant-TW, es-419.
_TAG = re.compile(r"[a-z]{2,3}(-[a-z]{4})?(-([a-z]{2}|[0-9]{3}))?")


@register.simple_tag(takes_context=True)
def page_language(context: template.Context) -> str:
    """The active language, with the region the browser asks for when it asks for this
    language (``en-GB`` for an English page in a British browser): the browser then formats
    dates and numbers the viewer's way (``<html lang>``, localtime.js)."""
    language = (get_language() or "en").lower()
    request = context.get("request")
    if request is None:
        return language
    for tag, _quality in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        if "-" in tag and tag.split("-")[0] == language.split("-")[0] and _TAG.fullmatch(tag):
            return _canonical(tag)
    return language


def _canonical(tag: str) -> str:
    """BCP 47 casing: ``en-gb`` → ``en-GB``, ``zh-hant-tw`` → ``zh-Hant-TW``."""
    parts = tag.split("-")
    return "-".join(
        [parts[0]] + [part.title() if len(part) == 4 else part.upper() for part in parts[1:]]
    )


#: The words of a relative time, translated; ``%(count)s`` is the number.
def _words() -> dict[str, str]:
    return {
        "min": gettext("%(count)s min ago"),
        "h": gettext("%(count)s h ago"),
        "d": gettext("%(count)s d ago"),
    }


@register.simple_tag
def relative_time(moment: datetime | None) -> SafeString:
    """``moment`` as ``<time>`` saying how long ago it was. localtime.js keeps it current
    with the same translated words (carried on the element, so a list the dashboard replaces
    live brings its own); without JavaScript it says how long ago it was when the page was
    made."""
    if moment is None:
        return SafeString("")
    words = _words()
    return format_html(
        '<time datetime="{}" data-relative data-just-now="{}" data-min="{}" data-h="{}" '
        'data-d="{}">{}</time>',
        moment.isoformat(),
        gettext("just now"),
        *(words[unit] % {"count": "#"} for unit in ("min", "h", "d")),
        time_ago(moment),
    )


def time_ago(moment: datetime, now: datetime | None = None) -> str:
    """ "just now" under a minute, then whole minutes, hours, days: the short words people read
    at a glance in a list (localtime.js counts the same way)."""
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    if seconds < 60:
        return gettext("just now")
    count, unit = next((seconds // size, unit) for size, unit in _UNITS if seconds >= size)
    return _words()[unit] % {"count": count}


_UNITS = ((86400, "d"), (3600, "h"), (60, "min"))
