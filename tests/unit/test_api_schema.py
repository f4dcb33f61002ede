"""The API keeps to its OpenAPI schema: Schemathesis, every check, as a signed-in moderator.

Requests go through Django's WSGI application in this process (no server), with the session
and CSRF cookies of a moderator of one room. Half of the generated path ids (and QR tokens) are
those of that room, its invite link and a join request in it, so both the answers about real
objects and those about unknown ids are checked. A fixed seed and a few examples per operation
keep it quick and the same on every run.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings

from guestgate.crypto import new_invite_token, token_hash
from guestgate.wsgi import application
from rooms.models import InviteLink, JoinRequest
from tests.unit.conftest import MakeRoom

pytestmark = pytest.mark.django_db

MODERATOR = "@mona:main.test"
# Fixed ids, so that the schema (loaded once, when the module is) can name them.
ROOM_PK, LINK_PK, JOIN_REQUEST_PK = 4101, 4102, 4103
TOKEN = new_invite_token()
# Cases are generated (and signed in) when the tests are collected, before the database exists.
SESSION_KEY, CSRF = secrets.token_hex(16), secrets.token_hex(16)


def _half_of_the_time(dictionary: str) -> dict[str, Any]:
    return {"dictionary": dictionary, "probability": 0.5}


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261130,
        "continue-on-failure": True,
        "generation": {"max-examples": 12, "database": "none"},
        "checks": {"enabled": True},
        "dictionaries": {
            "room": {"values": [ROOM_PK]},
            "link": {"values": [LINK_PK]},
            "join_request": {"values": [JOIN_REQUEST_PK]},
            "token": {"values": [TOKEN]},
        },
        "operations": [
            {
                "include-path-regex": "^/api/v1/rooms/",
                "parameters": {"path.id": _half_of_the_time("room")},
            },
            {
                "include-path-regex": "^/api/v1/invite-links/",
                "parameters": {
                    "path.id": _half_of_the_time("link"),
                    "body.token": _half_of_the_time("token"),
                },
            },
            {
                "include-path-regex": "^/api/v1/join-requests/",
                "parameters": {"path.id": _half_of_the_time("join_request")},
            },
        ],
    }
)

schema = schemathesis.openapi.from_wsgi("/api/v1/schema", application, config=CONFIG)


@pytest.fixture
def moderated_room(make_room: MakeRoom) -> None:
    """The moderator's room, with an invite link and a request another moderator claimed."""
    room = make_room(
        pk=ROOM_PK,
        power_levels={"invite": 0, "kick": 50, "ban": 50, "users": {MODERATOR: 50}},
    )
    InviteLink.objects.create(
        pk=LINK_PK, room=room, token_hash=token_hash(TOKEN), created_by=MODERATOR
    )
    # Deciding it answers 409, without a call to a homeserver.
    JoinRequest.objects.create(
        pk=JOIN_REQUEST_PK,
        public_id="00000000-0000-4000-8000-000000000003",
        room=room,
        user_id="@guest_y:guest.test",
        display_name="Bob (Guest)",
        status=JoinRequest.Status.WAITING,
        decided_by="@other:main.test",
    )


@schema.auth()
class ModeratorBrowser:
    """The session and CSRF cookies (and CSRF header) of the moderator's browser."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return SESSION_KEY

    def set(self, case: schemathesis.Case, session: str, ctx: schemathesis.AuthContext) -> None:
        case.cookies[django_settings.SESSION_COOKIE_NAME] = session
        case.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF
        case.headers["X-CSRFToken"] = CSRF


@pytest.fixture
def signed_in_moderator(moderated_room: None) -> None:
    """The moderator signed in, under the session key the generated cases carry."""
    client = Client()
    client.force_login(
        User.objects.create(username=MODERATOR), backend="rooms.moderators.MatrixModeratorBackend"
    )
    session = SessionStore(session_key=SESSION_KEY)
    session.update(client.session.items())
    session.save(must_create=True)


@pytest.fixture(autouse=True)
def _one_database_connection() -> Iterator[None]:
    """Django's handler closes the connection after a request; here it is the test's own."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
# The fixtures are the moderator's room and browser, the same for every request.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_keeps_to_its_schema(case: schemathesis.Case, signed_in_moderator: None) -> None:
    case.call_and_validate()
