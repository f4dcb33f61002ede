"""Who is asking, behind the reverse proxies the operator names and in front of any other.

Personas: the operator's proxy (a trusted peer), guests and a scraper behind it, and a forger
who connects directly and sends an ``X-Forwarded-For`` of their choosing.
"""

from __future__ import annotations

import secrets
from ipaddress import ip_network
from typing import Any

import pytest
from django.test import Client, RequestFactory

from accounts.models import GuestAccount
from ops.clientaddress import client_address
from rooms.models import JoinRequest

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"  # the operator's TLS proxy
EDGE = "10.0.0.3"  # a second proxy in front of it (a load balancer)
ALICE = "198.51.100.11"  # guests behind the proxy
BOB = "198.51.100.12"
FORGER = "203.0.113.66"  # connects directly


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
def behind_proxies(settings: Any) -> None:
    settings.TRUSTED_PROXIES = [ip_network(PROXY), ip_network("10.0.0.3/32")]


def address(remote: str, forwarded_for: str | None = None) -> str:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return client_address(RequestFactory().get("/", REMOTE_ADDR=remote, headers=headers))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert address(FORGER, forwarded_for=ALICE) == FORGER


@pytest.mark.usefixtures("behind_proxies")
def test_a_forged_header_from_an_untrusted_peer_changes_nothing() -> None:
    assert address(FORGER, forwarded_for=ALICE) == FORGER
    assert address(FORGER, forwarded_for=f"{ALICE}, {PROXY}") == FORGER


@pytest.mark.usefixtures("behind_proxies")
def test_behind_a_trusted_proxy_the_client_is_the_address_it_appended() -> None:
    assert address(PROXY, forwarded_for=ALICE) == ALICE


@pytest.mark.usefixtures("behind_proxies")
def test_what_the_client_wrote_left_of_the_proxys_entry_is_ignored() -> None:
    """A client sends "X-Forwarded-For: Alice"; the proxy appends the address it saw."""
    assert address(PROXY, forwarded_for=f"{ALICE}, {FORGER}") == FORGER


@pytest.mark.usefixtures("behind_proxies")
def test_through_two_trusted_proxies_the_rightmost_untrusted_address_is_the_client() -> None:
    assert address(PROXY, forwarded_for=f"{FORGER}, {BOB}, {EDGE}") == BOB


@pytest.mark.usefixtures("behind_proxies")
def test_a_trusted_proxy_without_a_header_is_itself_the_client() -> None:
    assert address(PROXY) == PROXY


@pytest.mark.usefixtures("behind_proxies")
def test_an_entry_that_is_no_address_ends_the_walk_at_the_proxy_that_passed_it_on() -> None:
    assert address(PROXY, forwarded_for=f"{ALICE}, unknown") == PROXY
    assert address(PROXY, forwarded_for=f"{ALICE}, <script>, {EDGE}") == EDGE


@pytest.mark.usefixtures("behind_proxies")
def test_ipv4_mapped_ipv6_addresses_are_the_ipv4_address() -> None:
    assert address(f"::ffff:{PROXY}", forwarded_for=f"::ffff:{ALICE}") == ALICE


# -- Where the address is used --------------------------------------------------------------


def join(client: Client, token: str, remote: str, forwarded_for: str, name: str) -> int:
    answer = client.post(
        f"/j/{token}",
        {"display_name": name},
        REMOTE_ADDR=remote,
        headers={"X-Forwarded-For": forwarded_for},
    )
    return answer.status_code


@pytest.mark.usefixtures("behind_proxies")
def test_guests_behind_a_trusted_proxy_each_have_their_own_join_limit(
    token: str, settings: Any
) -> None:
    settings.JOIN_RATE_PER_IP = 1

    alice = join(Client(), token, PROXY, ALICE, "Alice")
    bob = join(Client(), token, PROXY, BOB, "Bob")
    alice_again = join(Client(), token, PROXY, ALICE, "Alice Again")

    assert (alice, bob, alice_again) == (302, 302, 429)
    assert JoinRequest.objects.count() == GuestAccount.objects.count() == 2


@pytest.mark.usefixtures("behind_proxies")
def test_a_forger_cannot_escape_the_join_limit_with_made_up_addresses(
    token: str, settings: Any
) -> None:
    settings.JOIN_RATE_PER_IP = 1

    first = join(Client(), token, FORGER, ALICE, "Alice")
    second = join(Client(), token, FORGER, BOB, "Bob")

    assert (first, second) == (302, 429)
    assert JoinRequest.objects.count() == 1


@pytest.mark.usefixtures("behind_proxies")
def test_a_scraper_behind_the_trusted_proxy_is_judged_by_its_own_address(
    client: Client, settings: Any
) -> None:
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("192.0.2.0/24")]
    settings.METRICS_TOKEN = ""

    inside = client.get("/metrics", REMOTE_ADDR=PROXY, headers={"X-Forwarded-For": "192.0.2.5"})
    outside = client.get("/metrics", REMOTE_ADDR=PROXY, headers={"X-Forwarded-For": FORGER})

    assert (inside.status_code, outside.status_code) == (200, 404)


@pytest.mark.usefixtures("behind_proxies")
def test_a_forged_header_does_not_let_a_stranger_read_the_metrics(
    client: Client, settings: Any
) -> None:
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("192.0.2.0/24")]
    settings.METRICS_TOKEN = ""

    forged = client.get("/metrics", REMOTE_ADDR=FORGER, headers={"X-Forwarded-For": "192.0.2.5"})

    assert forged.status_code == 404
