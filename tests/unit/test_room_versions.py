"""Which room versions let guests knock (v7 and later; MATRIX-LAB): any string a homeserver
may send is answered, none raises."""

from __future__ import annotations

import pytest

from rooms.call_rooms import _supports_knock


@pytest.mark.parametrize(
    ("version", "knocks"),
    [
        ("1", False),
        ("6", False),
        ("7", True),
        ("12", True),
        (None, True),
        # Not plain ASCII digits: an unstable or future version, assumed to knock (the knock
        # itself will tell); "²" and "①" pass str.isdigit but int() refuses them.
        ("org.matrix.hydra.11", True),
        ("²", True),
        ("①", True),
        ("", True),
    ],
)
def test_room_versions_that_support_knocking(version: str | None, knocks: bool) -> None:
    assert _supports_knock(version) is knocks
