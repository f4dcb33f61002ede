"""Moderators' sign-in under abuse, against the real main homeserver.

Personas: the owner of a moderator account signing in from their own address, and an
attacker who knows the (public) Matrix id and guesses passwords from theirs, directly or
through the operator's proxy. Each request goes through GuestGate's sign-in view (Django's
test client); every password check is a real call to the main homeserver.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from devtools.localpair import LocalPair
from matrix import MatrixClient, register_with_shared_secret
from tests.conftest import Person, unique_localpart

pytestmark = pytest.mark.homeservers

PROXY = "10.0.0.2"  # the operator's TLS proxy, configured as trusted
OWNER_AT_HOME = "198.51.100.21"
ATTACKER = "203.0.113.66"
WAIT = re.compile(r"Please wait (\d+) seconds")


@pytest.fixture(autouse=True)
def _own_cache(settings: Any) -> None:
    """A cache of this test's own, so every limit starts at zero (production shares Redis)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": secrets.token_hex(8),
        }
    }


@pytest.fixture
def as_deployed(settings: Any) -> None:
    """The sign-in limits of guestgate/settings.py (the test run raises them)."""
    settings.SIGNIN_RATE_PER_ACCOUNT = 5
    settings.SIGNIN_RATE_PER_IP = 20


@pytest.fixture
def owner(homeserver_pair: LocalPair) -> Iterator[Person]:
    """A moderator account of its own (no other test's sign-ins count against it)."""
    password = secrets.token_urlsafe(16)
    session = register_with_shared_secret(
        homeserver_pair.main.client_url,
        shared_secret=homeserver_pair.main.registration_shared_secret,
        username=unique_localpart("owner_"),
        password=password,
        displayname="Olga Owner",
    )
    with MatrixClient(base_url=session.homeserver_url, access_token=session.access_token) as c:
        yield Person(session, c, password)


def sign_in(matrix_id: str, password: str, *, remote: str, forwarded_for: str = "") -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    answer = Client().post(
        "/moderator/sign-in",
        {"matrix_id": matrix_id, "password": password},
        REMOTE_ADDR=remote,
        headers=headers,
    )
    return answer.status_code


# -- Sign-in: throttled per account and address ------------------------------------------------


@pytest.mark.usefixtures("as_deployed")
def test_someone_elses_wrong_passwords_do_not_lock_the_owner_out(owner: Person) -> None:
    for _ in range(6):
        sign_in(owner.user_id, "guessed-wrong", remote=ATTACKER)

    attacker = sign_in(owner.user_id, owner.password, remote=ATTACKER)
    owner_at_home = sign_in(owner.user_id, owner.password, remote=OWNER_AT_HOME)

    assert (attacker, owner_at_home) == (429, 302)


@pytest.mark.usefixtures("as_deployed")
def test_the_attackers_wait_grows_with_each_failure_after_the_first_five(
    owner: Person, time_machine: Any
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    statuses = [sign_in(owner.user_id, "guessed-wrong", remote=ATTACKER) for _ in range(5)]
    assert statuses == [400] * 5

    waits = []
    for _ in range(3):
        refused = Client().post(
            "/moderator/sign-in",
            {"matrix_id": owner.user_id, "password": "guessed-wrong"},
            REMOTE_ADDR=ATTACKER,
        )
        assert refused.status_code == 429
        wait = int(WAIT.search(refused.content.decode())[1])  # type: ignore[index]
        waits.append(wait)
        time_machine.shift(wait)  # then the next guess is checked, and fails
        assert sign_in(owner.user_id, "guessed-wrong", remote=ATTACKER) == 400

    assert waits[0] < waits[1] < waits[2]


@pytest.mark.usefixtures("as_deployed")
def test_the_owners_own_typos_are_forgotten_once_they_sign_in(owner: Person) -> None:
    for _ in range(4):
        assert sign_in(owner.user_id, "typo", remote=OWNER_AT_HOME) == 400
    assert sign_in(owner.user_id, owner.password, remote=OWNER_AT_HOME) == 302

    for _ in range(4):
        assert sign_in(owner.user_id, "typo", remote=OWNER_AT_HOME) == 400
    assert sign_in(owner.user_id, owner.password, remote=OWNER_AT_HOME) == 302


@pytest.mark.usefixtures("as_deployed")
def test_one_address_guessing_many_accounts_is_throttled(
    owner: Person, moderator: Person, settings: Any
) -> None:
    settings.SIGNIN_RATE_PER_IP = 3
    for localpart in ("alice", "bob", "carol"):
        assert sign_in(f"@{localpart}:{settings.MAIN_HS_SERVER_NAME}", "x", remote=ATTACKER) == 400

    assert sign_in(owner.user_id, owner.password, remote=ATTACKER) == 429
    assert sign_in(moderator.user_id, moderator.password, remote=OWNER_AT_HOME) == 302


# -- Sign-in behind the operator's proxy ---------------------------------------------------------


@pytest.mark.usefixtures("as_deployed")
def test_behind_a_trusted_proxy_the_address_limit_is_each_clients_own(
    owner: Person, settings: Any
) -> None:
    settings.TRUSTED_PROXIES = [ip_network(PROXY)]
    settings.SIGNIN_RATE_PER_IP = 2
    for _ in range(3):
        sign_in(
            f"@nobody:{settings.MAIN_HS_SERVER_NAME}", "x", remote=PROXY, forwarded_for=ATTACKER
        )

    owner_through_the_proxy = sign_in(
        owner.user_id, owner.password, remote=PROXY, forwarded_for=OWNER_AT_HOME
    )

    assert owner_through_the_proxy == 302


@pytest.mark.usefixtures("as_deployed")
def test_a_forged_forwarded_for_does_not_escape_the_address_limit(
    owner: Person, settings: Any
) -> None:
    settings.TRUSTED_PROXIES = [ip_network(PROXY)]
    settings.SIGNIN_RATE_PER_IP = 2
    for n in range(3):
        nobody = f"@nobody:{settings.MAIN_HS_SERVER_NAME}"
        sign_in(nobody, "x", remote=ATTACKER, forwarded_for=f"192.0.2.{n}")

    forged = sign_in(owner.user_id, owner.password, remote=ATTACKER, forwarded_for="192.0.2.99")

    assert forged == 429
