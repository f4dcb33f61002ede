"""Fixtures of the unit tests: a call room as the database holds it (no homeserver), and an
invite link to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from rooms.invite_links import invite_link_create
from rooms.models import CallRoom

#: The room's moderator (power 50: may invite, kick and ban in the default room).
MODERATOR = "@mona:main.test"

MakeRoom = Callable[..., CallRoom]


@pytest.fixture
def make_room(db: None) -> MakeRoom:
    """Make a ready call room; keyword arguments replace its fields."""

    def make(**fields: Any) -> CallRoom:
        defaults: dict[str, Any] = {
            "room_id": "!AbCdEf123",
            "name": "Team call",
            "status": CallRoom.Status.READY,
            "registered_by": MODERATOR,
            "checked_at": timezone.now(),
            "power_levels": {"invite": 0, "kick": 50, "ban": 50, "users": {MODERATOR: 50}},
        }
        return CallRoom.objects.create(**(defaults | fields))

    return make


@pytest.fixture
def room(make_room: MakeRoom) -> CallRoom:
    return make_room()


@pytest.fixture
def token(room: CallRoom) -> str:
    """The token of an invite link to ``room``."""
    return invite_link_create(room=room, created_by=MODERATOR).token
