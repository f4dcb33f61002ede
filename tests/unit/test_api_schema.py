"""The API keeps to its OpenAPI schema: Schemathesis, every check, as a signed-in moderator.

The schema is loaded from the app, and requests go through Django's WSGI application in this
process (no server), with the session and CSRF cookies of a moderator of one room. The first
test sends every request to that room, its invite link and a join request in it, so each body
meets real validation; the second also sends generated ids (unknown, negative, not numbers).
A fixed seed and a few examples per operation keep it quick and the same on every run.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime
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


def _config(id_of: Callable[[str], Any], token: Any) -> schemathesis.Config:
    """Every check, a fixed seed, a few examples; the path ids and QR token that ``id_of``
    (given "room", "link" or "join_request") and ``token`` say."""
    return schemathesis.Config.from_dict(
        {
            "seed": 20261130,
            "continue-on-failure": True,
            "generation": {"max-examples": 10, "database": "none"},
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
                    "parameters": {"path.id": id_of("room")},
                },
                {
                    "include-path-regex": "^/api/v1/invite-links/",
                    "parameters": {"path.id": id_of("link"), "body.token": token},
                },
                {
                    "include-path-regex": "^/api/v1/join-requests/",
                    "parameters": {"path.id": id_of("join_request")},
                },
            ],
        }
    )


def _half_of_the_time(dictionary: str) -> dict[str, Any]:
    return {"dictionary": dictionary, "probability": 0.5}


_IDS = {"room": ROOM_PK, "link": LINK_PK, "join_request": JOIN_REQUEST_PK}

# The moderator's own room, link and request, in every phase: each request body meets the
# validation of an object that exists.
schema = schemathesis.openapi.from_wsgi(
    "/api/v1/schema", application, config=_config(_IDS.__getitem__, TOKEN)
)
# Generated ids too (unknown, negative, not numbers), half of the time in the fuzzing phase.
schema_of_any_id = schemathesis.openapi.from_wsgi(
    "/api/v1/schema",
    application,
    config=_config(_half_of_the_time, _half_of_the_time("token")),
)


@schema_of_any_id.hook("map_case")
@schema.hook("map_case")
def expiry_in_the_future(ctx: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    """The schema cannot say "in the future": an expiry in the past (refused, 400, as
    test_invite_links shows) becomes one in the future; other values stay as generated."""
    body = case.body
    value = body.get("expires_at") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(value, str):
        try:
            expires_at = parse_datetime(value)
        except ValueError:
            return case
        if expires_at is not None and _aware(expires_at) <= timezone.now():
            body["expires_at"] = "2999-01-01T00:00:00Z"
    return case


def _aware(moment: datetime) -> datetime:
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


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


@schema_of_any_id.auth()
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
    signed_in = client.session
    Session.objects.save(SESSION_KEY, dict(signed_in.items()), signed_in.get_expiry_date())


@pytest.fixture(autouse=True)
def _one_database_connection() -> Iterator[None]:
    """Django's handler closes the connection after a request; here it is the test's own."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# The fixtures are the moderator's room and browser, the same for every request.
_ONE_ROOM = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@schema.parametrize()
@_ONE_ROOM
def test_the_api_keeps_to_its_schema(case: schemathesis.Case, signed_in_moderator: None) -> None:
    case.call_and_validate()


@schema_of_any_id.parametrize()
@_ONE_ROOM
def test_the_api_keeps_to_its_schema_for_any_id(
    case: schemathesis.Case, signed_in_moderator: None
) -> None:
    case.call_and_validate()
