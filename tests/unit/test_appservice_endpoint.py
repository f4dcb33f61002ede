"""GuestGate's appservice endpoint, as the main homeserver calls it (no homeserver needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from rooms.models import AppserviceTransaction, MembershipEvent

pytestmark = pytest.mark.django_db

URL = "/_matrix/app/v1/transactions/{}"


def knock_event(event_id: str = "$knock1", user: str = "@guest_a:guest.test") -> dict:
    return {
        "event_id": event_id,
        "room_id": "!AbCdEf123",
        "type": "m.room.member",
        "sender": user,
        "state_key": user,
        "origin_server_ts": 1_790_000_000_000,
        "content": {"membership": "knock", "reason": "Hi", "displayname": "Alice (Guest)"},
        "unsigned": {"age": 12},
    }


def push(client: Client, txn_id: str, body: object, token: str | None = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.put(
        URL.format(txn_id), data=json.dumps(body), content_type="application/json", headers=headers
    )


def test_a_knock_pushed_with_the_right_token_is_recorded(client: Client) -> None:
    response = push(client, "t1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    assert response.status_code == 200
    assert response.json() == {}
    event = MembershipEvent.objects.get()
    assert (event.user_id, event.membership, event.reason) == ("@guest_a:guest.test", "knock", "Hi")
    assert event.displayname == "Alice (Guest)"


def test_a_retried_transaction_is_answered_and_records_its_events_once(client: Client) -> None:
    push(client, "t1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    again = push(client, "t1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    assert again.status_code == 200
    assert again.json() == {}
    assert list(MembershipEvent.objects.values_list("event_id", flat=True)) == ["$knock1"]


def test_a_transaction_id_used_again_after_main_restarted_brings_its_new_events(
    client: Client,
) -> None:
    # A main homeserver on SQLite numbers its transactions from 1 again after a restart.
    push(client, "1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    after_restart = push(
        client,
        "1",
        {"events": [knock_event("$other", "@guest_b:guest.test")]},
        settings.MAIN_HS_TOKEN,
    )

    assert after_restart.status_code == 200
    assert sorted(MembershipEvent.objects.values_list("event_id", flat=True)) == [
        "$knock1",
        "$other",
    ]


def test_the_same_event_in_two_transactions_is_recorded_once(client: Client) -> None:
    push(client, "t1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)
    push(client, "t2", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    assert AppserviceTransaction.objects.count() == 2
    assert MembershipEvent.objects.count() == 1


def test_a_forged_token_is_refused_and_records_nothing(client: Client) -> None:
    response = push(client, "t1", {"events": [knock_event()]}, "not-the-hs-token")

    assert response.status_code == 403
    assert response.json()["errcode"] == "M_FORBIDDEN"
    assert not AppserviceTransaction.objects.exists()
    assert not MembershipEvent.objects.exists()


def test_a_push_without_a_token_is_unauthorized(client: Client) -> None:
    response = push(client, "t1", {"events": [knock_event()]})

    assert response.status_code == 401
    assert not AppserviceTransaction.objects.exists()


def test_the_token_in_the_query_string_is_not_accepted(client: Client) -> None:
    response = client.put(
        URL.format("t1") + f"?access_token={settings.MAIN_HS_TOKEN}",
        data=json.dumps({"events": []}),
        content_type="application/json",
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps([1, 2]), json.dumps({"events": "nope"})],
    ids=["not-json", "not-an-object", "events-not-a-list"],
)
def test_a_malformed_body_is_a_clear_400_and_records_nothing(client: Client, body: str) -> None:
    response = client.put(
        URL.format("t1"),
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {settings.MAIN_HS_TOKEN}",
    )

    assert response.status_code == 400
    assert response.json()["errcode"] == "M_BAD_JSON"
    assert not AppserviceTransaction.objects.exists()


def message_event(n: int, size: int) -> dict:
    return {
        "event_id": f"$message{n}",
        "room_id": "!AbCdEf123",
        "type": "m.room.message",
        "sender": "@mona:main.test",
        "origin_server_ts": 1_790_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": "x" * size},
    }


def test_a_transaction_larger_than_djangos_body_limit_is_accepted(client: Client) -> None:
    # What main sent after GuestGate was away a moment while people chatted: 3 MB.
    chat = [message_event(n, 30_000) for n in range(100)]
    body = {"events": [*chat, knock_event()]}
    assert len(json.dumps(body)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = push(client, "big", body, settings.MAIN_HS_TOKEN)

    assert response.status_code == 200
    assert list(MembershipEvent.objects.values_list("event_id", flat=True)) == ["$knock1"]


def test_deeply_nested_json_is_refused_as_bad_json_and_records_nothing(client: Client) -> None:
    body = '{"events": [' + "[" * 100_000 + "]" * 100_000 + "]}"

    response = client.put(
        URL.format("deep"),
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.MAIN_HS_TOKEN}"},
    )

    assert response.status_code == 400
    assert response.json()["errcode"] == "M_BAD_JSON"
    assert not AppserviceTransaction.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("origin_server_ts", 10**30), ("origin_server_ts", -1), ("event_id", "$" + "e" * 300)],
)
def test_values_no_homeserver_sends_are_refused_and_record_nothing(
    client: Client, field: str, value: object
) -> None:
    event = knock_event() | {field: value}

    response = push(client, "odd", {"events": [event]}, settings.MAIN_HS_TOKEN)

    assert response.status_code == 400
    assert response.json()["errcode"] == "M_INVALID_PARAM"
    assert not AppserviceTransaction.objects.exists()
    assert not MembershipEvent.objects.exists()


def test_other_event_types_are_acknowledged_but_not_logged_as_membership(client: Client) -> None:
    message = {
        "event_id": "$msg",
        "room_id": "!AbCdEf123",
        "type": "m.room.message",
        "sender": "@mona:main.test",
        "content": {"body": "hello"},
    }

    response = push(client, "t1", {"events": [message]}, settings.MAIN_HS_TOKEN)

    assert response.status_code == 200
    assert AppserviceTransaction.objects.get().event_count == 1
    assert not MembershipEvent.objects.exists()


def test_user_queries_are_answered_not_found(client: Client) -> None:
    response = client.get(
        "/_matrix/app/v1/users/@someone:main.test",
        HTTP_AUTHORIZATION=f"Bearer {settings.MAIN_HS_TOKEN}",
    )

    assert response.status_code == 404
    assert response.json()["errcode"] == "M_NOT_FOUND"
