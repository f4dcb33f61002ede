"""/metrics: Prometheus text read from the database and the shared cache, for allowed readers."""

from __future__ import annotations

import secrets
from datetime import timedelta
from ipaddress import ip_network
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import GuestAccount
from accounts.services import default_policy
from guestgate.retrying import run_retrying
from matrix import Forbidden, HomeserverUnavailable
from ops.health import broker_probe
from ops.stepstats import run_step
from rooms.models import AppserviceTransaction, AuditEntry, CallRoom, InviteLink, JoinRequest

pytestmark = pytest.mark.django_db

PROMETHEUS = "127.0.0.1"  # the scraper, on the same machine
STRANGER = "203.0.113.7"


@pytest.fixture(autouse=True)
def _own_cache(settings) -> None:
    """A cache of this test's own, so counts start at zero (production shares Redis)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": secrets.token_hex(8),
        }
    }


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def guest(n: int, status: str) -> GuestAccount:
    return GuestAccount.objects.create(
        localpart=f"guest_{n}",
        user_id=f"@guest_{n}:guest.test",
        display_name=f"G{n}",
        status=status,
        policy=default_policy(),
    )


def link(room: CallRoom, n: int, **fields: Any) -> InviteLink:
    return InviteLink.objects.create(
        room=room, token_hash=f"{n:064d}", created_by="@mona:main.test", **fields
    )


def test_a_stranger_gets_a_404(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR=STRANGER)

    assert response.status_code == 404


def test_the_scraper_on_an_allowed_address_gets_metrics(client: Client) -> None:
    samples = scrape(client, REMOTE_ADDR=PROMETHEUS)

    assert value(samples, "guestgate_metrics_source_up", source="database") == 1
    assert value(samples, "guestgate_metrics_source_up", source="cache") == 1


def test_an_allowed_network_lets_its_addresses_in(client: Client, settings) -> None:
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("10.0.0.0/8")]

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=PROMETHEUS).status_code == 404


def test_the_token_lets_a_stranger_in_and_a_wrong_one_does_not(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-me-please"

    right = client.get(
        "/metrics", REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer scrape-me-please"}
    )
    wrong = client.get(
        "/metrics", REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer scrape-me-pleasE"}
    )

    assert right.status_code == 200
    assert wrong.status_code == 404


def test_without_a_token_configured_no_bearer_gets_in(client: Client, settings) -> None:
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer "})

    assert response.status_code == 404


def test_a_request_through_a_proxy_is_not_let_in_by_the_proxys_address(client: Client) -> None:
    """Behind a reverse proxy on the same machine every request comes from 127.0.0.1."""
    response = client.get("/metrics", REMOTE_ADDR=PROMETHEUS, headers={"X-Forwarded-For": STRANGER})

    assert response.status_code == 404


def test_the_numbers_are_the_rows_in_the_database(client: Client, room: CallRoom) -> None:
    guest(1, GuestAccount.Status.ACTIVE)
    guest(2, GuestAccount.Status.ACTIVE)
    guest(3, GuestAccount.Status.EXPIRED)
    request = JoinRequest.objects.create(
        public_id="00000000-0000-4000-8000-000000000001",
        room=room,
        user_id="@guest_1:guest.test",
        display_name="Alice (Guest)",
        status=JoinRequest.Status.WAITING,
    )
    for action in ("knocked", "knocked", "approved", "denied", "banned", "expired"):
        AuditEntry.objects.create(
            room=room, join_request=request, action=action, actor="@mona:main.test", subject="x"
        )
    now = timezone.now()
    link(room, 1)
    link(room, 2, expires_at=now + timedelta(hours=1), max_uses=5, use_count=4)
    link(room, 3, revoked_at=now)
    link(room, 4, expires_at=now - timedelta(seconds=1))
    link(room, 5, max_uses=2, use_count=2)
    AppserviceTransaction.objects.create(txn_id="t1", event_count=3)
    AppserviceTransaction.objects.create(txn_id="t2", event_count=2)

    samples = scrape(client, REMOTE_ADDR=PROMETHEUS)

    assert value(samples, "guestgate_guest_accounts", status="active") == 2
    assert value(samples, "guestgate_guest_accounts", status="expired") == 1
    assert value(samples, "guestgate_guest_accounts", status="pending") == 0
    assert value(samples, "guestgate_join_requests", status="waiting") == 1
    assert value(samples, "guestgate_join_requests", status="joined") == 0
    assert value(samples, "guestgate_audit_entries", action="knocked") == 2
    for action in ("approved", "denied", "banned", "expired"):
        assert value(samples, "guestgate_audit_entries", action=action) == 1
    assert value(samples, "guestgate_invite_links_active") == 2
    assert value(samples, "guestgate_appservice_transactions_total") == 2
    assert value(samples, "guestgate_appservice_events_total") == 5
    assert 0 <= value(samples, "guestgate_appservice_last_push_age_seconds") < 60


def test_with_no_push_ever_there_is_no_push_age(client: Client) -> None:
    samples = scrape(client, REMOTE_ADDR=PROMETHEUS)

    assert value(samples, "guestgate_appservice_transactions_total") == 0
    assert not any(name == "guestgate_appservice_last_push_age_seconds" for name, _ in samples)


def test_homeserver_errors_and_step_durations_come_from_the_shared_cache(client: Client) -> None:
    def unavailable() -> None:
        raise HomeserverUnavailable("could not reach the homeserver (ConnectError)")

    run_step("rooms.joining.join_guest", lambda: None)
    with pytest.raises(HomeserverUnavailable):
        run_step("rooms.joining.join_guest", unavailable)

    samples = scrape(client, REMOTE_ADDR=PROMETHEUS)

    assert value(samples, "guestgate_homeserver_errors_total", code="matrix.unavailable") == 1
    assert value(samples, "guestgate_homeserver_errors_total", code="matrix.forbidden") == 0
    step = {"step": "rooms.joining.join_guest"}
    assert value(samples, "guestgate_task_step_duration_seconds_count", **step) == 2
    assert value(samples, "guestgate_task_step_duration_seconds_bucket", le="0.05", **step) == 2
    assert value(samples, "guestgate_task_step_duration_seconds_bucket", le="+Inf", **step) == 2
    assert value(samples, "guestgate_task_step_duration_seconds_sum", **step) < 0.1


class _Task:
    """The little of a bound Celery task that run_retrying reads: a last attempt."""

    name = "rooms.provisioning.provision_join_request"
    max_retries = 0
    request = SimpleNamespace(retries=0)


def test_an_error_a_task_gives_up_on_is_counted(client: Client) -> None:
    given_up: list[str] = []

    def forbidden() -> None:
        raise Forbidden("You are not invited to this room.", status=403, errcode="M_FORBIDDEN")

    run_retrying(_Task(), forbidden, on_give_up=lambda error: given_up.append(error.code))  # type: ignore[arg-type]

    samples = scrape(client, REMOTE_ADDR=PROMETHEUS)
    assert given_up == ["matrix.forbidden"]
    assert value(samples, "guestgate_homeserver_errors_total", code="matrix.forbidden") == 1
    assert (
        value(
            samples,
            "guestgate_task_step_duration_seconds_count",
            step="rooms.provisioning.provision_join_request",
        )
        == 1
    )


def test_a_cache_that_is_down_costs_the_numbers_not_the_task(settings) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    ran: list[bool] = []

    run_step("rooms.joining.join_guest", lambda: ran.append(True))

    assert ran == [True]


@pytest.fixture
def redis_db_15() -> redis.Redis:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/15", socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


def test_the_queue_length_is_read_from_a_redis_broker(redis_db_15: redis.Redis) -> None:
    queue = f"test-queue-{secrets.token_hex(4)}"
    redis_db_15.rpush(queue, "a", "b", "c")
    try:
        probe = broker_probe("redis://127.0.0.1:6379/15", queue)
    finally:
        redis_db_15.delete(queue)

    assert (probe.kind, probe.tasks_waiting) == ("redis", 3)


def test_the_embedded_broker_has_no_queue_length() -> None:
    assert broker_probe("filesystem://").tasks_waiting is None


def test_a_scraper_that_asks_for_openmetrics_gets_it(client: Client) -> None:
    response = client.get(
        "/metrics",
        REMOTE_ADDR=PROMETHEUS,
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )

    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")
