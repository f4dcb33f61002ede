"""/healthz: what a load balancer or an operator sees when things work, and when they do not."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from ops import health
from ops.workers import HEARTBEAT_KEY, worker_heard
from rooms.models import AppserviceTransaction

pytestmark = pytest.mark.django_db


class _Versions(BaseHTTPRequestHandler):
    """Just enough of a homeserver (GET /_matrix/client/versions) and of a LiveKit JWT
    service (the CORS preflight of POST /sfu/get, as lk-jwt-service answers it)."""

    def do_OPTIONS(self) -> None:
        if self.path != "/sfu/get":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST")
        self.send_header("Access-Control-Allow-Headers", "Accept, Content-Type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path != "/_matrix/client/versions":
            self.send_error(404)
            return
        body = json.dumps({"versions": ["v1.11", "v1.12"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def homeserver_url() -> Iterator[str]:
    """A homeserver that answers the versions request (the only one /healthz makes)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Versions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An address that accepts connections and never answers (a hung homeserver)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(autouse=True)
def own_cache(settings) -> None:
    """A cache of this test's own: the workers' heartbeat of the test processes stays out."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


@pytest.fixture
def both_homeservers_up(settings, homeserver_url: str) -> None:
    settings.GUEST_HS_URL = homeserver_url
    settings.MAIN_HS_URL = homeserver_url
    worker_heard()  # and a worker running
    settings.RTC_TRANSPORTS = [{"type": "livekit", "livekit_service_url": homeserver_url}]


def healthz(client: Client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


@pytest.mark.usefixtures("both_homeservers_up")
def test_everything_answering_is_ok_with_200_and_a_sentence_per_check(client: Client) -> None:
    status, body = healthz(client)

    assert status == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "database",
        "broker",
        "worker",
        "guest_homeserver",
        "main_homeserver",
        "appservice_pushes",
        "call_focus",
    }
    for check in body["checks"].values():
        assert check["ok"] is True
        assert isinstance(check["detail"], str) and check["detail"]
    assert body["checks"]["guest_homeserver"]["detail"] == "answers (Matrix v1.12)"


@pytest.mark.usefixtures("both_homeservers_up")
def test_no_push_ever_received_is_ok_but_said(client: Client) -> None:
    _, body = healthz(client)

    pushes = body["checks"]["appservice_pushes"]
    assert pushes["ok"] is True
    assert pushes["detail"] == "no push received yet"
    assert pushes["seconds_since_last"] is None


def test_an_unreachable_guest_homeserver_makes_it_degraded_with_503(
    client: Client, settings, homeserver_url: str, closed_port_url: str
) -> None:
    settings.GUEST_HS_URL = closed_port_url
    settings.MAIN_HS_URL = homeserver_url

    status, body = healthz(client)

    assert status == 503
    assert body["status"] == "degraded"
    guest = body["checks"]["guest_homeserver"]
    assert guest["ok"] is False
    assert guest["detail"] == "matrix.unavailable: could not reach the homeserver (ConnectError)"
    assert body["checks"]["main_homeserver"]["ok"] is True
    assert body["checks"]["database"]["ok"] is True


def test_a_hung_homeserver_is_given_up_on_at_the_deadline(
    client: Client, settings, homeserver_url: str, silent_url: str, monkeypatch
) -> None:
    settings.GUEST_HS_URL = homeserver_url
    settings.MAIN_HS_URL = silent_url
    monkeypatch.setattr(health, "NETWORK_DEADLINE_SECONDS", 0.5)

    started = time.monotonic()
    status, body = healthz(client)

    assert time.monotonic() - started < 2
    assert status == 503
    assert body["checks"]["main_homeserver"] == {
        "ok": False,
        "detail": "no answer within 0.5 s",
    }


@pytest.mark.usefixtures("both_homeservers_up")
def test_a_broker_that_refuses_connections_makes_it_degraded(
    client: Client, closed_port_url: str, monkeypatch
) -> None:
    port = closed_port_url.rsplit(":", 1)[1]
    probe = health.broker_probe
    monkeypatch.setattr(
        health, "broker_probe", lambda: probe(f"redis://:hunter2@127.0.0.1:{port}/0")
    )

    status, body = healthz(client)

    assert status == 503
    broker = body["checks"]["broker"]
    assert broker["ok"] is False
    assert broker["detail"].startswith("cannot connect: OperationalError")
    assert "hunter2" not in json.dumps(body)


@pytest.mark.usefixtures("both_homeservers_up")
def test_a_recent_push_is_ok_and_a_stale_one_is_not(client: Client, settings) -> None:
    settings.HEALTH_PUSH_STALE_SECONDS = 3600
    AppserviceTransaction.objects.create(txn_id="t1", event_count=1)

    _, recent = healthz(client)
    AppserviceTransaction.objects.update(received_at=timezone.now() - timedelta(hours=2))
    status, stale = healthz(client)

    assert recent["checks"]["appservice_pushes"]["ok"] is True
    assert recent["checks"]["appservice_pushes"]["detail"].startswith("last push ")
    assert status == 503
    assert stale["status"] == "degraded"
    pushes = stale["checks"]["appservice_pushes"]
    assert pushes["ok"] is False
    assert pushes["seconds_since_last"] >= 7200
    assert "last push 2:00:0" in pushes["detail"]


@pytest.mark.usefixtures("both_homeservers_up")
def test_the_answer_holds_no_token_and_no_homeserver_url(client: Client, settings) -> None:
    response = client.get("/healthz")
    text = response.content.decode()

    for secret in (settings.GUEST_AS_TOKEN, settings.MAIN_AS_TOKEN, settings.MAIN_HS_TOKEN):
        assert secret not in text
    assert settings.GUEST_HS_URL not in text
    assert "127.0.0.1" not in text


def test_the_database_failing_is_down(settings, both_homeservers_up, monkeypatch) -> None:
    monkeypatch.setattr(health, "check_database", lambda: health.Check(False, "query failed"))

    assert health.health_check().status == "down"


def test_no_worker_ever_heard_makes_it_degraded_and_says_what_guests_see(
    client: Client, settings, homeserver_url: str
) -> None:
    settings.GUEST_HS_URL = settings.MAIN_HS_URL = homeserver_url

    status, body = healthz(client)

    assert status == 503
    worker = body["checks"]["worker"]
    assert worker["ok"] is False
    assert "no Celery worker has ever reported" in worker["detail"]
    assert "Creating your guest pass" in worker["detail"]


def test_a_worker_silent_for_three_heartbeats_is_taken_for_dead(
    client: Client, settings, homeserver_url: str
) -> None:
    settings.GUEST_HS_URL = settings.MAIN_HS_URL = homeserver_url
    settings.WORKER_HEARTBEAT_SECONDS = 10
    cache.set(HEARTBEAT_KEY, time.time() - 29, timeout=None)

    _, alive = healthz(client)
    cache.set(HEARTBEAT_KEY, time.time() - 100, timeout=None)
    status, dead = healthz(client)

    assert alive["checks"]["worker"]["ok"] is True
    assert status == 503
    assert dead["checks"]["worker"]["ok"] is False
    assert dead["checks"]["worker"]["detail"].startswith("no Celery worker heard for 0:01:4")


# -- The call's focus ----------------------------------------------------------------------


@pytest.mark.usefixtures("both_homeservers_up")
def test_no_jwt_service_makes_it_degraded_as_the_call_in_the_lobby_cannot_start(
    client: Client, settings
) -> None:
    settings.RTC_TRANSPORTS = []

    status, body = healthz(client)

    assert status == 503 and body["status"] == "degraded"
    focus = body["checks"]["call_focus"]
    assert focus["ok"] is False
    assert focus["detail"] == "no LiveKit JWT service configured: the call cannot start"


@pytest.mark.usefixtures("both_homeservers_up")
def test_no_jwt_service_is_ok_when_the_call_opens_elsewhere(client: Client, settings) -> None:
    settings.RTC_TRANSPORTS = []
    settings.CALL_MODE = "link"

    status, body = healthz(client)

    assert status == 200 and body["checks"]["call_focus"]["ok"] is True


@pytest.mark.usefixtures("both_homeservers_up")
def test_a_jwt_service_that_is_not_one_or_does_not_answer_is_said_without_its_url(
    client: Client, settings, homeserver_url: str, closed_port_url: str
) -> None:
    settings.RTC_TRANSPORTS = [
        {"type": "livekit", "livekit_service_url": f"{homeserver_url}/elsewhere"},
        {"type": "livekit", "livekit_service_url": closed_port_url},
    ]

    _, body = healthz(client)
    first = body["checks"]["call_focus"]["detail"]
    settings.RTC_TRANSPORTS = settings.RTC_TRANSPORTS[1:]
    _, body = healthz(client)
    second = body["checks"]["call_focus"]["detail"]

    assert first == "JWT service 1 has no /sfu/get (HTTP 404 to the preflight)"
    assert (
        second == "JWT service 1 does not answer (could not reach the JWT service (ConnectError))"
    )
    assert "127.0.0.1" not in first + second
