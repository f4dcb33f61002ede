"""MatrixClient's messages, edits and reactions against the real main homeserver."""

from __future__ import annotations

import secrets

import pytest

from devtools.localpair import LocalPair
from matrix import MatrixClient, NotFound
from tests.conftest import Person

pytestmark = pytest.mark.homeservers


@pytest.fixture
def room_with_bot(knock_room: str, moderator: Person) -> str:
    """The knock room, with GuestGate's bot (PL 50) and its moderator in it."""
    return knock_room


def txn() -> str:
    return f"test-{secrets.token_hex(8)}"


def test_a_notice_is_sent_once_per_transaction_id(
    room_with_bot: str, main_bot: MatrixClient, moderator: Person
) -> None:
    txn_id = txn()

    first = main_bot.send_notice(room_with_bot, "Two guests wait", txn_id=txn_id, html="<b>Two</b>")
    again = main_bot.send_notice(room_with_bot, "Two guests wait", txn_id=txn_id)

    assert first == again
    seen = moderator.client.event(room_with_bot, first)
    assert seen.type == "m.room.message"
    assert dict(seen.content) == {
        "msgtype": "m.notice",
        "body": "Two guests wait",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>Two</b>",
        "m.mentions": {},
    }


def test_edits_replace_the_text_and_are_listed_as_relations_oldest_first(
    room_with_bot: str, main_bot: MatrixClient, moderator: Person
) -> None:
    original = main_bot.send_notice(room_with_bot, "One guest waits", txn_id=txn())

    main_bot.edit_message(room_with_bot, original, "Two guests wait", txn_id=txn())
    main_bot.edit_message(room_with_bot, original, "Nobody waits", txn_id=txn())

    edits = moderator.client.relations(room_with_bot, original, rel_type="m.replace")
    assert [e.content["m.new_content"]["body"] for e in edits] == [
        "Two guests wait",
        "Nobody waits",
    ]
    assert edits[-1].content["body"] == "* Nobody waits"
    assert edits[-1].content["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}


def test_a_reaction_is_an_annotation_of_the_event(
    room_with_bot: str, main_bot: MatrixClient, moderator: Person
) -> None:
    notice = main_bot.send_notice(room_with_bot, "One guest waits", txn_id=txn())

    reaction = moderator.client.send_reaction(room_with_bot, notice, "1\ufe0f\u20e3", txn_id=txn())

    found = main_bot.relations(room_with_bot, notice, rel_type="m.annotation")
    assert [(e.event_id, e.sender, e.content["m.relates_to"]["key"]) for e in found] == [
        (reaction, moderator.user_id, "1\ufe0f\u20e3")
    ]


def test_messages_are_the_latest_first_and_a_reply_names_what_it_answers(
    room_with_bot: str, main_bot: MatrixClient, moderator: Person, homeserver_pair: LocalPair
) -> None:
    command = moderator.client.send_event(
        room_with_bot, "m.room.message", {"msgtype": "m.text", "body": "!guests"}, txn_id=txn()
    )
    reply = main_bot.send_notice(
        room_with_bot, "Help", txn_id=txn(), reply_to=command, mentions=[moderator.user_id]
    )

    latest = moderator.client.messages(room_with_bot, limit=5)

    assert [e.event_id for e in latest[:2]] == [reply, command]
    assert latest[0].content["m.relates_to"] == {"m.in_reply_to": {"event_id": command}}
    assert latest[0].content["m.mentions"] == {"user_ids": [moderator.user_id]}


def test_an_event_the_user_cannot_see_is_not_found(
    room_with_bot: str, moderator: Person, member: Person
) -> None:
    notice = moderator.client.send_event(
        room_with_bot, "m.room.message", {"msgtype": "m.text", "body": "private"}, txn_id=txn()
    )

    with pytest.raises(NotFound):
        member.client.event(room_with_bot, notice)
