"""Fixtures shared by the whole suite: the real homeserver pair and the people who use it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import TransactionTestCase
from django.utils import translation

from devtools.localpair import LocalPair, configured_pair
from devtools.localpair.process import down, ensure_up
from matrix import CALL_MEMBER_EVENT, MatrixClient, Session, register_with_shared_secret
from rooms.call_rooms import call_room_register
from rooms.invite_links import invite_link_create
from rooms.models import CallRoom
from tests.dbflush import retrying_deadlocks

# Every test that shares the database with GuestGate's processes ends with a flush that a push
# arriving at that moment can deadlock (tests/dbflush.py).
_TEARDOWN = "_fixture_teardown"  # Django's private method that runs the flush
setattr(
    TransactionTestCase,
    _TEARDOWN,
    retrying_deadlocks(getattr(TransactionTestCase, _TEARDOWN)),
)

# GuestGate's web server, Celery worker and the fault proxies (integration and browser tests).
pytest_plugins = ["tests.processes"]


def _test_pair() -> LocalPair:
    return configured_pair()


@pytest.fixture(autouse=True)
def _default_language_after_each_test() -> Iterator[None]:
    """A request in German (Accept-Language, the language cookie) leaves the thread's active
    language German after Django's test client answers; the next test's words would be too."""
    yield
    translation.deactivate()


@pytest.fixture(scope="session")
def homeserver_pair() -> Iterator[LocalPair]:
    """The local guest and main Synapse, started once per test run unless already up."""
    pair = _test_pair()
    _, started = ensure_up(pair)
    yield pair
    if started:
        down(pair)


@pytest.fixture(scope="session")
def guest_appservice(homeserver_pair: LocalPair) -> Iterator[MatrixClient]:
    with MatrixClient(
        base_url=homeserver_pair.guest.client_url, access_token=homeserver_pair.guest.as_token
    ) as client:
        yield client


@pytest.fixture(scope="session")
def main_bot(homeserver_pair: LocalPair) -> Iterator[MatrixClient]:
    with MatrixClient(
        base_url=homeserver_pair.main.client_url, access_token=homeserver_pair.main.as_token
    ) as client:
        yield client


@dataclass(frozen=True)
class Person:
    session: Session
    client: MatrixClient
    password: str

    @property
    def user_id(self) -> str:
        return self.session.user_id


def unique_localpart(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def moderator(homeserver_pair: LocalPair) -> Iterator[Person]:
    """A person with an ordinary account on the main homeserver who creates call rooms."""
    yield from _main_user(homeserver_pair, "moderator_", "Mona Moderator")


@pytest.fixture(scope="session")
def member(homeserver_pair: LocalPair) -> Iterator[Person]:
    """Someone else with an account on the main homeserver, and no power in call rooms."""
    yield from _main_user(homeserver_pair, "member_", "Max Member")


def _main_user(pair: LocalPair, prefix: str, displayname: str) -> Iterator[Person]:
    password = secrets.token_urlsafe(16)
    session = register_with_shared_secret(
        pair.main.client_url,
        shared_secret=pair.main.registration_shared_secret,
        username=unique_localpart(prefix),
        password=password,
        displayname=displayname,
    )
    with MatrixClient(base_url=session.homeserver_url, access_token=session.access_token) as c:
        yield Person(session, c, password)


@pytest.fixture
def knock_room(homeserver_pair: LocalPair, moderator: Person, main_bot: MatrixClient) -> str:
    """A fresh call room on main with join rule knock, with GuestGate's bot joined at PL 50."""
    bot_id = f"@{homeserver_pair.bot_localpart}:{homeserver_pair.main.server_name}"
    room_id = moderator.client.create_room(
        name="Team call",
        join_rule="knock",
        invite=[bot_id],
        power_level_users={bot_id: 50},  # the creator has the top level by room version 12
        # Guests (level 0) may join the call, as in Element's call rooms (CALL-LAB §6).
        power_level_events={CALL_MEMBER_EVENT: 0},
    )
    main_bot.join(room_id, via=[homeserver_pair.main.server_name])
    return room_id


@pytest.fixture
def guest_user_id(homeserver_pair: LocalPair, guest_appservice: MatrixClient) -> str:
    """A brand-new account in GuestGate's namespace on the guest homeserver."""
    return guest_appservice.register_appservice_user(
        unique_localpart(homeserver_pair.guest_user_prefix)
    )


@pytest.fixture
def call_room(knock_room: str, moderator: Person) -> CallRoom:
    """The knock room, registered with GuestGate by its moderator and ready for guests."""
    room = call_room_register(room=knock_room, registered_by=moderator.user_id)
    assert room.status == CallRoom.Status.READY, room.problems
    return room


@pytest.fixture
def invite_token(call_room: CallRoom, moderator: Person) -> str:
    """The token of a plain invite link (no expiry, no limit, not pre-approved)."""
    return invite_link_create(room=call_room, created_by=moderator.user_id).token
