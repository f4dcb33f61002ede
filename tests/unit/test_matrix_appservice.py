"""Transactions pushed by the main homeserver, and the appservice's token checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix import bearer_token, parse_transaction, tokens_match

FIXTURES = Path(__file__).parent / "fixtures" / "matrix"

GUEST = "@guest_x:localhost:28481"
ROOM = "!AbCd1234"


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def knock_event(**changes):
    event = fixture("transaction_knock")["events"][0]
    event.update(changes)
    return event


def test_a_knock_is_read_with_its_membership_and_reason():
    (event,) = parse_transaction(fixture("transaction_knock"))

    assert (event.event_id, event.room_id, event.type) == ("$Kn0ckEventId", ROOM, "m.room.member")
    assert (event.sender, event.state_key) == (GUEST, GUEST)
    assert event.membership == "knock"
    assert event.prev_membership is None
    assert event.reason == "Alice from accounting"
    assert event.origin_server_ts == 1764017000000


def test_a_kick_of_a_knock_shows_the_previous_membership_and_other_events_pass_through():
    kick, message = parse_transaction(fixture("transaction_kick_and_message"))

    assert (kick.membership, kick.prev_membership) == ("leave", "knock")
    assert kick.sender == "@guest-desk:localhost:28482"
    assert kick.state_key == GUEST
    assert kick.reason == "not on the guest list"
    assert message.type == "m.room.message"
    assert message.membership is None
    assert message.state_key is None


def test_an_empty_transaction_has_no_events():
    assert parse_transaction({"events": []}) == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "events",
        {},
        {"events": {}},
        {"events": ["$notAnEvent"]},
        {"events": [knock_event(event_id=None)]},
        {"events": [knock_event(room_id="")]},
        {"events": [{"event_id": "$e", "room_id": ROOM}]},
    ],
)
def test_a_malformed_transaction_is_refused(body):
    with pytest.raises(ValueError):
        parse_transaction(body)


@pytest.mark.parametrize(
    "odd_event",
    [
        knock_event(event_id="$noSender", sender=None),
        knock_event(event_id="$oddContent", content=["knock"]),
        knock_event(event_id="$oddStateKey", state_key=42),
    ],
)
def test_an_event_of_unexpected_shape_is_skipped_and_the_rest_kept(odd_event):
    events = parse_transaction({"events": [odd_event, knock_event()]})

    assert [event.event_id for event in events] == ["$Kn0ckEventId"]


def test_event_content_cannot_be_changed_by_its_reader():
    (event,) = parse_transaction(fixture("transaction_knock"))

    with pytest.raises(TypeError):
        event.content["membership"] = "join"


def test_tokens_match_only_the_expected_token():
    assert tokens_match("main_hs_token_local_test", "main_hs_token_local_test")
    assert not tokens_match("main_hs_token_local_tesT", "main_hs_token_local_test")
    assert not tokens_match("main_hs_token", "main_hs_token_local_test")


@pytest.mark.parametrize(("given", "expected"), [(None, "secret"), ("", "secret"), ("", "")])
def test_a_missing_token_never_matches(given, expected):
    assert not tokens_match(given, expected)


def test_tokens_match_compares_non_ascii_tokens():
    assert tokens_match("clé", "clé")
    assert not tokens_match("clé", "cle")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer main_hs_token", "main_hs_token"),
        ("bearer main_hs_token", "main_hs_token"),
        ("  Bearer   main_hs_token  ", "main_hs_token"),
        ("Basic bWFpbjpocw==", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_reads_only_bearer_headers(header, token):
    assert bearer_token(header) == token
