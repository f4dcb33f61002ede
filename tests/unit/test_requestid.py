"""Request ids in responses and log lines, across into Celery tasks; secrets kept out of logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals
from django.test import Client

from guestgate.celery import app as celery_app
from ops.logs import JsonFormatter, RedactSecretsFilter, redact
from ops.requestid import TASK_HEADER, RequestIdFilter, request_id
from rooms import joining, provisioning

pytestmark = pytest.mark.django_db

PAGE = "/moderator/sign-in"


class Captured(logging.Handler):
    """Records as the console handler sees them: with the request id, secrets removed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())
        self.addFilter(RedactSecretsFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def test_a_sane_request_id_from_the_proxy_comes_back(client: Client) -> None:
    response = client.get(PAGE, headers={"X-Request-ID": "edge-7f3a.b_c-9"})

    assert response.status_code == 200
    assert response["X-Request-ID"] == "edge-7f3a.b_c-9"


@pytest.mark.parametrize(
    "sent", ["has space", "x" * 65, "semi;colon", "new\u2028line", "<script>"], ids=repr
)
def test_an_unfit_request_id_is_replaced_by_a_new_one(client: Client, sent: str) -> None:
    response = client.get(PAGE, headers={"X-Request-ID": sent})

    made = response["X-Request-ID"]
    assert made != sent
    assert len(made) == 32 and all(c in "0123456789abcdef" for c in made)


def test_each_request_without_an_id_gets_its_own(client: Client) -> None:
    assert client.get(PAGE)["X-Request-ID"] != client.get(PAGE)["X-Request-ID"]


def test_what_a_request_logs_carries_its_id_and_no_invite_token(
    client: Client, captured: Captured
) -> None:
    response = client.get(
        "/j/abcdefghijklmnopqrstuvwxyz/oops", headers={"X-Request-ID": "probe-42"}
    )

    assert response.status_code == 404
    not_found = [r for r in captured.records if r.name == "django.request"]
    assert [r.getMessage() for r in not_found] == ["Not Found: /j/…/oops"]
    assert not_found[0].request_id == "probe-42"  # type: ignore[attr-defined]
    assert request_id.get() is None  # forgotten once the response is closed


def test_outside_requests_and_tasks_the_id_is_a_dash(captured: Captured) -> None:
    logging.getLogger("guestgate.test").warning("nothing to do with a request")

    assert captured.records[-1].request_id == "-"  # type: ignore[attr-defined]


def test_the_console_handler_adds_ids_and_redacts_for_every_logger() -> None:
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    kinds = {type(f) for f in console.filters}

    assert {RequestIdFilter, RedactSecretsFilter} <= kinds
    # runserver's access log goes through it too, instead of Django's own handler.
    server = logging.getLogger("django.server")
    assert console in server.handlers and not server.propagate
    # Django's own console handler would print "Not Found: /j/<token>" a second time, raw.
    assert logging.getLogger("django").handlers == []


def test_a_task_sent_during_a_request_runs_under_the_requests_id(captured: Captured) -> None:
    join_guest: Any = joining.join_guest  # the stubs know no connection=, nor header fields
    token = request_id.set("probe-42")
    try:
        with celery_app.connection_for_write("memory://") as conn:
            join_guest.apply_async((7,), connection=conn)
            message = conn.SimpleQueue(celery_app.conf.task_default_queue).get(timeout=1)
            message.ack()
    finally:
        request_id.reset(token)
    assert message.headers[TASK_HEADER] == "probe-42"

    # The worker's side: the task's request is built from the message headers.
    task_id = message.headers["id"]
    join_guest.push_request(**message.headers)
    try:
        signals.task_prerun.send(sender=join_guest, task_id=task_id, task=join_guest)
        logging.getLogger("rooms.joining").info("joining")
        signals.task_postrun.send(sender=join_guest, task_id=task_id, task=join_guest)
    finally:
        join_guest.pop_request()

    assert captured.records[-1].request_id == "probe-42"  # type: ignore[attr-defined]
    assert request_id.get() is None


def test_a_task_no_request_sent_logs_under_its_own_id(captured: Captured) -> None:
    task: Any = provisioning.requeue_stuck_join_requests
    task.push_request(id="5f0c8a4e-beat-task")
    try:
        signals.task_prerun.send(sender=task, task_id="5f0c8a4e-beat-task", task=task)
        logging.getLogger("rooms.provisioning").info("requeueing")
        signals.task_postrun.send(sender=task, task_id="5f0c8a4e-beat-task", task=task)
    finally:
        task.pop_request()

    assert captured.records[-1].request_id == "5f0c8a4e-beat-task"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '"POST /j/abcdefghijklmnopqrstuvwxyz HTTP/1.1" 302 0',
            '"POST /j/… HTTP/1.1" 302 0',
        ),
        (
            "token syt_Z3Vlc3RfYQ_AbCdEfGhIjKlMnOpQrSt_0a1b2c given",
            "token syt_… given",
        ),
        ("mas gave mat_AbCdEfGhIjKlMnOpQrStUvWxYz_1a2B3c", "mas gave mat_…"),
        (
            "GET /_matrix/client/v3/sync?access_token=secret123&since=s1",
            "GET /_matrix/client/v3/sync?access_token=…&since=s1",
        ),
        (
            '{"access_token": "syt_abc", "device_id": "D"}',
            '{"access_token": "…", "device_id": "D"}',
        ),
        ("Authorization: Bearer hunter2hunter2", "Authorization: Bearer …"),
        ("the format_string stays; /lobby/1234 too", "the format_string stays; /lobby/1234 too"),
    ],
)
def test_secrets_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_a_records_arguments_and_traceback_are_redacted_too(captured: Captured) -> None:
    try:
        raise RuntimeError("homeserver said: bad token syt_Z3Vlc3Q_AbCdEfGhIjKlMn_0a1b")
    except RuntimeError:
        logging.getLogger("guestgate.test").exception(
            '"%s" %s %s', "GET /j/abcdefghijklmnopqrstuvwxyz HTTP/1.1", "500", "0"
        )

    record = captured.records[-1]
    assert record.getMessage() == '"GET /j/… HTTP/1.1" 500 0'
    assert "syt_…" in str(record.exc_text)
    assert "AbCdEfGhIjKlMn" not in str(record.exc_text)


def test_the_json_format_is_one_object_per_line_with_the_request_id() -> None:
    record = logging.LogRecord(
        "rooms.joining", logging.INFO, __file__, 1, "guest %s let in", ("A",), None
    )
    record.request_id = "probe-42"

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "rooms.joining"
    assert entry["request_id"] == "probe-42"
    assert entry["message"] == "guest A let in"
    assert entry["time"].endswith("+00:00")
