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


def test_a_repeated_transaction_is_answered_and_changes_nothing(client: Client) -> None:
    push(client, "t1", {"events": [knock_event()]}, settings.MAIN_HS_TOKEN)

    again = push(
        client,
        "t1",
        {"events": [knock_event("$other", "@guest_b:guest.test")]},
        settings.MAIN_HS_TOKEN,
    )

    assert again.status_code == 200
    assert again.json() == {}
    assert AppserviceTransaction.objects.count() == 1
    assert list(MembershipEvent.objects.values_list("event_id", flat=True)) == ["$knock1"]


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
