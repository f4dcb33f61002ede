"""Durations typed as people write them ("2h", "1d 12h"), read and shown back both ways."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from guestgate.durations import (
    DurationUnreadable,
    ShortDurationField,
    duration_parse,
    duration_short,
)
from rooms.models import CallRoom, InviteLink


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("2h", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 2 H ", timedelta(hours=2)),
        ("1w", timedelta(days=7)),
        ("45s", timedelta(seconds=45)),
        ("1 00:00:00", timedelta(days=1)),  # Django's own format, as /admin/ showed it
        ("12:00:00", timedelta(hours=12)),
        ("P1DT2H", timedelta(days=1, hours=2)),  # ISO 8601
    ],
)
def test_a_typed_duration_is_read(typed: str, meant: timedelta) -> None:
    assert duration_parse(typed) == meant


@pytest.mark.parametrize("typed", ["", "2x", "h", "two hours", "-1 00:00:00", "1d -2h", "2h30"])
def test_anything_else_is_unreadable(typed: str) -> None:
    with pytest.raises(DurationUnreadable):
        duration_parse(typed)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (timedelta(hours=2), "2h"),
        (timedelta(minutes=90), "1h 30m"),
        (timedelta(days=1, hours=12), "1d 12h"),
        (timedelta(days=30), "4w 2d"),
        (timedelta(seconds=61), "1m 1s"),
        (timedelta(0), "0s"),
    ],
)
def test_a_duration_is_shown_in_the_short_form_and_reads_back_the_same(
    value: timedelta, shown: str
) -> None:
    assert duration_short(value) == shown
    assert duration_parse(shown) == value


def test_the_field_names_the_format_when_it_cannot_read_a_value() -> None:
    field = ShortDurationField(required=False)

    with pytest.raises(ValidationError) as refused:
        field.clean("2 hours")

    assert "2h, 90m or 1d 12h" in str(refused.value)
    assert "2h" in str(field.help_text) and "1d 12h" in str(field.help_text)
    assert field.prepare_value(timedelta(days=1)) == "1d"
    assert field.clean("2h") == timedelta(hours=2) and field.clean("") is None


def test_the_field_keeps_to_its_limits() -> None:
    field = ShortDurationField(min_value=timedelta(minutes=1), max_value=timedelta(days=366))

    for typed, said in [("30s", "at least 1m"), ("400d", "at most 52w 2d")]:
        with pytest.raises(ValidationError) as refused:
            field.clean(typed)
        assert said in str(refused.value)


def test_the_invite_link_command_takes_a_typed_duration(room: CallRoom) -> None:
    out = io.StringIO()
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False):
        call_command("create_invite_link", room.room_id, "--expires-in", "1d 12h", stdout=out)

    assert InviteLink.objects.get().expires_at == datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
    with pytest.raises(CommandError, match="such as"):
        call_command("create_invite_link", room.room_id, "--expires-in", "soon")
