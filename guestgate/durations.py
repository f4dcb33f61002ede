"""Durations as people type them: "2h", "90m", "1d 12h", "1w".

One form field for every place a duration is entered (invite links, retention policies in
/admin/). It also reads Django's own format ("1 00:00:00", "12:00:00") and ISO 8601
("P1DT12H"), so values typed before keep working, and it shows a stored value back in the
short form.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.utils.dateparse import parse_duration
from django.utils.duration import duration_string
from django.utils.translation import gettext, gettext_lazy

#: Seconds in each unit a person may type, largest first (the order they are shown in).
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

# One or more "<number><unit>", spaces allowed between and inside: "1d 12h", "1d12h", "90 m".
_PART = re.compile(r"\s*([0-9]{1,9})\s*([wdhms])\s*", re.IGNORECASE)
_SHORT = re.compile(r"(?:\s*[0-9]{1,9}\s*[wdhms]\s*)+", re.IGNORECASE)

#: What the fields say about the format (help text and error message).
FORMAT_HINT = gettext_lazy(
    "For example 2h, 90m, 1d 12h or 1w (w weeks, d days, h hours, m minutes, s seconds)."
)


class DurationUnreadable(ValueError):
    """Neither the short form nor Django's own."""


def duration_parse(typed: str) -> timedelta:
    """The duration typed as "2h", "1d 12h", "90m", Django's "1 00:00:00" or ISO "P1D".

    Raises DurationUnreadable for anything else (a negative value included: no one means it).
    """
    text = typed.strip()
    if _SHORT.fullmatch(text):
        seconds = sum(int(number) * _UNITS[unit.lower()] for number, unit in _PART.findall(text))
        return timedelta(seconds=seconds)
    parsed = parse_duration(text) if text else None
    if parsed is None or parsed < timedelta(0):
        raise DurationUnreadable(typed)
    return parsed


def duration_short(value: timedelta) -> str:
    """The duration in the short form, largest unit first: 1d 12h, 1h 30m, 45s, 0s.

    A value with fractions of a second (only Django's format can give one) keeps that format.
    """
    if value.microseconds or value < timedelta(0):
        return duration_string(value)
    left = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


class ShortDurationField(forms.DurationField):
    """A duration field that reads "2h", "1d 12h", "90m" (and Django's own format), says so in
    its help text, and shows values back in the short form."""

    default_error_messages = {
        "invalid": gettext_lazy("Enter a duration such as 2h, 90m or 1d 12h."),
        "overflow": gettext_lazy("That duration is too long."),
    }

    def __init__(
        self,
        *,
        min_value: timedelta | None = None,
        max_value: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("help_text", FORMAT_HINT)
        kwargs.setdefault("widget", forms.TextInput())
        super().__init__(**kwargs)
        self.min_value = min_value
        self.max_value = max_value

    def prepare_value(self, value: Any) -> Any:
        return duration_short(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta | None:
        if value in self.empty_values:
            return None
        if isinstance(value, timedelta):
            return value
        try:
            return duration_parse(str(value))
        except DurationUnreadable:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        except OverflowError:
            raise forms.ValidationError(self.error_messages["overflow"], code="overflow") from None

    def validate(self, value: Any) -> None:
        super().validate(value)
        if self.min_value is not None and value is not None and value < self.min_value:
            raise forms.ValidationError(
                gettext("Enter at least %(minimum)s.")
                % {"minimum": duration_short(self.min_value)},
                code="min_value",
            )
        if self.max_value is not None and value is not None and value > self.max_value:
            raise forms.ValidationError(
                gettext("Enter at most %(maximum)s.") % {"maximum": duration_short(self.max_value)},
                code="max_value",
            )
