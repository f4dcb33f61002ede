"""Moderators reached inside Matrix: the waiting notice in the call room, read back through the
main homeserver, and guests let in by a reaction or a command, with the real pair and worker."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from devtools.localpair import LocalPair
from matrix import CALL_MEMBER_EVENT, MatrixClient, RoomEvent
from rooms.call_rooms import call_room_register
from rooms.invite_links import invite_link_create
from rooms.models import AuditEntry, CallRoom, JoinRequest, MembershipEvent, WaitingNotice
from rooms.notices import refresh_waiting_notices, waiting_notice_refresh
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]

TWO = "2\ufe0f\u20e3"
ONE = "1\ufe0f\u20e3"


@pytest.fixture
def mona(guestgate_web: str, moderator: Person) -> Iterator[ModeratorBrowser]:
    """The room's moderator, signed in at the dashboard."""
    browser = ModeratorBrowser(guestgate_web)
    assert browser.sign_in(moderator.user_id, moderator.password).status_code == 302
    yield browser
    browser.close()


@pytest.fixture
def max_in_the_room(
    call_room: CallRoom, member: Person, moderator: Person, homeserver_pair: LocalPair
) -> Person:
    """Max, a member of the call room without any power in it."""
    moderator.client.invite(call_room.room_id, member.user_id)
    member.client.join(call_room.room_id, via=[homeserver_pair.main.server_name])
    return member


def txn() -> str:
    return f"test-{secrets.token_hex(8)}"


def waiting_guests(guestgate_web: str, token: str, *names: str) -> list[JoinRequest]:
    requests = []
    for name in names:
        browser = GuestBrowser(guestgate_web)
        browser.ask_to_join(token, name)
        browser.wait_for("waiting")
        browser.close()
        requests.append(JoinRequest.objects.get(display_name=f"{name} (Guest)"))
    return requests


def open_notice(room: CallRoom) -> str:
    """The event id of the room's open notice, once GuestGate has sent it."""

    def sent() -> str | None:
        notice = WaitingNotice.objects.filter(room=room).first()
        return notice.event_id if notice and notice.event_id else None

    return wait_for(sent, what="the waiting notice")


def notice_text(client: MatrixClient, room_id: str, event_id: str) -> str:
    """What a Matrix client shows of the notice: its newest edit, or the original."""
    edits = client.relations(room_id, event_id, rel_type="m.replace")
    if edits:
        return str(edits[-1].content["m.new_content"]["body"])
    return str(client.event(room_id, event_id).content["body"])


def wait_for_text(
    client: MatrixClient,
    room_id: str,
    event_id: str,
    check: Callable[[str], bool],
    what: str,
    timeout: float = 15.0,
) -> str:
    return wait_for(
        lambda: text if check(text := notice_text(client, room_id, event_id)) else None,
        what=what,
        timeout=timeout,
    )


def bot_reply_to(client: MatrixClient, room_id: str, bot_id: str, mentioning: str) -> RoomEvent:
    """The bot's answer that mentions ``mentioning``, read back from the room."""

    def found() -> RoomEvent | None:
        for event in client.messages(room_id, limit=20):
            mentions = event.content.get("m.mentions") or {}
            if event.sender == bot_id and mentioning in mentions.get("user_ids", []):
                return event
        return None

    return wait_for(found, what=f"GuestGate's answer to {mentioning}")


def bot_id(pair: LocalPair) -> str:
    return f"@{pair.bot_localpart}:{pair.main.server_name}"


def test_the_notice_lists_who_waits_is_edited_as_the_queue_changes_and_closes(
    guestgate_web: str,
    mona: ModeratorBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    homeserver_pair: LocalPair,
) -> None:
    room_id = call_room.room_id
    (alice,) = waiting_guests(guestgate_web, invite_token, "Alice")

    notice = open_notice(call_room)
    first = moderator.client.event(room_id, notice)
    assert first.sender == bot_id(homeserver_pair)
    assert first.content["msgtype"] == "m.notice"
    assert "1. Alice (Guest)" in first.content["body"]
    assert f"/moderator/rooms/{call_room.pk}" in first.content["body"]
    assert "Alice (Guest)" in first.content["formatted_body"]

    (bob,) = waiting_guests(guestgate_web, invite_token, "Bob")
    text = wait_for_text(
        moderator.client, room_id, notice, lambda t: "2. Bob (Guest)" in t, "Bob in the notice"
    )
    assert "1. Alice (Guest)" in text
    assert "2 guests are waiting" in text

    for request in (alice, bob):
        mona.post(f"/moderator/requests/{request.pk}/approve")
    closed = wait_for_text(
        moderator.client, room_id, notice, lambda t: "Nobody is waiting" in t, "the closed notice"
    )
    assert "Alice" not in closed
    assert f"/moderator/rooms/{call_room.pk}" in closed

    waiting_guests(guestgate_web, invite_token, "Carol")
    wait_for(
        lambda: (n := WaitingNotice.objects.get(room=call_room).event_id) and n != notice,
        what="a new notice for the next guest",
    )


def test_a_moderators_reaction_lets_that_guest_in(
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
) -> None:
    alice, bob = waiting_guests(guestgate_web, invite_token, "Alice", "Bob")
    notice = open_notice(call_room)
    wait_for_text(
        moderator.client, call_room.room_id, notice, lambda t: "2. Bob" in t, "both listed"
    )

    moderator.client.send_reaction(call_room.room_id, notice, TWO, txn_id=txn())

    wait_for(
        lambda: JoinRequest.objects.get(pk=bob.pk).status == JoinRequest.Status.JOINED,
        what="Bob joined",
    )
    assert JoinRequest.objects.get(pk=alice.pk).status == JoinRequest.Status.WAITING
    approval = AuditEntry.objects.get(action=AuditEntry.Action.APPROVED)
    assert (approval.actor, approval.subject, approval.via_guestgate) == (
        moderator.user_id,
        bob.user_id,
        False,
    )
    text = wait_for_text(
        moderator.client, call_room.room_id, notice, lambda t: "Bob" not in t, "Bob off the list"
    )
    assert "1. Alice (Guest)" in text


def test_a_reaction_from_someone_without_power_lets_nobody_in(
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    max_in_the_room: Person,
    homeserver_pair: LocalPair,
) -> None:
    (alice,) = waiting_guests(guestgate_web, invite_token, "Alice")
    notice = open_notice(call_room)

    max_in_the_room.client.send_reaction(call_room.room_id, notice, ONE, txn_id=txn())

    answer = bot_reply_to(
        max_in_the_room.client, call_room.room_id, bot_id(homeserver_pair), max_in_the_room.user_id
    )
    assert "only a moderator" in answer.content["body"]
    alice.refresh_from_db()
    assert (alice.status, alice.decided_by) == (JoinRequest.Status.WAITING, "")
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.APPROVED).exists()


def test_commands_let_in_and_deny_by_number_and_explain_themselves(
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    homeserver_pair: LocalPair,
) -> None:
    room_id = call_room.room_id
    alice, bob = waiting_guests(guestgate_web, invite_token, "Alice", "Bob")
    notice = open_notice(call_room)
    wait_for_text(moderator.client, room_id, notice, lambda t: "2. Bob" in t, "both listed")

    def say(body: str) -> str:
        content = {"msgtype": "m.text", "body": body}
        return moderator.client.send_event(room_id, "m.room.message", content, txn_id=txn())

    say("!guests let in 1")
    say("!guests deny 2 The room is full, sorry")

    wait_for(
        lambda: JoinRequest.objects.get(pk=alice.pk).status == JoinRequest.Status.JOINED,
        what="Alice joined",
    )
    wait_for(
        lambda: JoinRequest.objects.get(pk=bob.pk).status == JoinRequest.Status.DENIED,
        what="Bob denied",
    )
    assert JoinRequest.objects.get(pk=bob.pk).reason == "The room is full, sorry"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DENIED)
    assert (entry.actor, entry.reason, entry.via_guestgate) == (
        moderator.user_id,
        "The room is full, sorry",
        False,
    )

    question = say("!guests dance")
    answer = bot_reply_to(moderator.client, room_id, bot_id(homeserver_pair), moderator.user_id)
    assert answer.content["m.relates_to"] == {"m.in_reply_to": {"event_id": question}}
    assert "!guests let in all" in answer.content["body"]


def test_only_reactions_and_commands_for_guestgate_are_stored(
    call_room: CallRoom, moderator: Person, guestgate_web: str, invite_token: str
) -> None:
    room_id = call_room.room_id
    waiting_guests(guestgate_web, invite_token, "Alice")
    notice = open_notice(call_room)
    chat = moderator.client.send_event(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "hello all"}, txn_id=txn()
    )
    other = moderator.client.send_event(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "unrelated"}, txn_id=txn()
    )
    elsewhere = moderator.client.send_reaction(room_id, other, ONE, txn_id=txn())
    command = moderator.client.send_event(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "!guests help"}, txn_id=txn()
    )
    reaction = moderator.client.send_reaction(room_id, notice, "\U0001f44d", txn_id=txn())

    wait_for(
        lambda: MembershipEvent.objects.filter(event_id__in=[command, reaction]).count() == 2,
        what="the command and the reaction stored",
    )
    assert not MembershipEvent.objects.filter(event_id__in=[chat, other, elsewhere]).exists()


def test_a_burst_of_guests_makes_a_handful_of_edits(
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    capsys: pytest.CaptureFixture[str],
) -> None:
    guests = 30
    names = [f"Crowd{n:02d}" for n in range(guests)]
    browsers = [GuestBrowser(guestgate_web) for _ in names]
    for browser, name in zip(browsers, names, strict=True):
        browser.ask_to_join(invite_token, name)
    for browser in browsers:
        browser.wait_for("waiting", timeout=120)
        browser.close()

    notice = open_notice(call_room)
    wait_for_text(
        moderator.client,
        call_room.room_id,
        notice,
        lambda t: f"{guests} guests are waiting" in t,
        "every guest in the notice",
        timeout=30,
    )

    edits = moderator.client.relations(call_room.room_id, notice, rel_type="m.replace")
    with capsys.disabled():
        print(f"\n{guests} guests: 1 notice and {len(edits)} edits")
    assert 1 + len(edits) <= guests // 3


def test_the_waiting_minutes_are_brought_up_to_date_about_once_a_minute(
    guestgate_web: str, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    room_id = call_room.room_id
    (alice,) = waiting_guests(guestgate_web, invite_token, "Alice")
    notice = open_notice(call_room)
    wait_for_text(
        moderator.client, room_id, notice, lambda t: "Alice (Guest) (just now)" in t, "Alice"
    )
    # As if Alice had asked 3 minutes ago and the notice had last been sent 2 minutes ago.
    JoinRequest.objects.filter(pk=alice.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    WaitingNotice.objects.filter(room=call_room).update(
        sent_at=timezone.now() - timedelta(minutes=2)
    )

    refresh_waiting_notices.delay()  # the beat's safety net, run by the worker

    text = wait_for_text(
        moderator.client,
        room_id,
        notice,
        lambda t: "Alice (Guest) (waiting 3 minutes)" in t,
        "the fresh minutes",
    )
    assert "1 guest is waiting" in text
    edits = len(moderator.client.relations(room_id, notice, rel_type="m.replace"))
    # A minute later as far as Alice is concerned, but the notice was edited 10 s ago (past the
    # rate limit of edits, not a minute): the minutes wait.
    JoinRequest.objects.filter(pk=alice.pk).update(created_at=timezone.now() - timedelta(minutes=4))
    wait_for(
        lambda: WaitingNotice.objects.filter(
            room=call_room, busy_until__isnull=True, due_at__isnull=True
        ).exists(),
        what="no refresh running or due",
    )
    WaitingNotice.objects.filter(room=call_room).update(
        sent_at=timezone.now() - timedelta(seconds=10)
    )
    assert waiting_notice_refresh(call_room) == "unchanged"
    assert len(moderator.client.relations(room_id, notice, rel_type="m.replace")) == edits


@pytest.fixture
def moderators_room(moderator: Person, member: Person, homeserver_pair: LocalPair) -> str:
    """Mona's moderators' room: GuestGate's bot invited, Max its admin too (but without power
    in the call room)."""
    room_id = moderator.client.create_room(
        name="Moderators",
        join_rule="invite",
        invite=[bot_id(homeserver_pair), member.user_id],
        power_level_users={member.user_id: 100},
    )
    member.client.join(room_id, via=[homeserver_pair.main.server_name])
    return room_id


def settings_saved(mona: ModeratorBrowser, room: CallRoom, notice_room: str) -> str:
    """Save the room's settings page with this notice room; the page answered (on a refusal)."""
    answer = mona.post(f"/moderator/rooms/{room.pk}/settings", notice_room=notice_room)
    if answer.status_code == 302:
        return ""
    assert answer.status_code == 400
    return answer.text


def test_a_notice_room_the_bot_cannot_join_is_refused_and_nothing_is_saved(
    mona: ModeratorBrowser, call_room: CallRoom, moderator: Person
) -> None:
    closed = moderator.client.create_room(name="Closed", join_rule="invite")

    page = settings_saved(mona, call_room, closed)

    error = re.search(r'id="id_notice_room_error">([^<]*)<', page)
    assert error and "could not join that room" in error.group(1)
    assert CallRoom.objects.get(pk=call_room.pk).notice_room_id == ""
    assert "(starting with !)" in settings_saved(mona, call_room, "not a room")


def test_the_notice_goes_to_the_moderators_room_where_reactions_act_with_call_room_rights(
    guestgate_web: str,
    mona: ModeratorBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    member: Person,
    moderators_room: str,
    homeserver_pair: LocalPair,
) -> None:
    assert settings_saved(mona, call_room, moderators_room) == ""
    assert CallRoom.objects.get(pk=call_room.pk).notice_room_id == moderators_room

    alice, bob = waiting_guests(guestgate_web, invite_token, "Alice", "Bob")
    notice = open_notice(call_room)
    wait_for_text(moderator.client, moderators_room, notice, lambda t: "2. Bob" in t, "both listed")
    assert moderator.client.event(moderators_room, notice).sender == bot_id(homeserver_pair)
    in_call_room = moderator.client.messages(call_room.room_id, limit=30)
    assert notice not in [event.event_id for event in in_call_room]

    # Max is an admin of the moderators' room, but has no power in the call room.
    member.client.send_reaction(moderators_room, notice, ONE, txn_id=txn())
    answer = bot_reply_to(member.client, moderators_room, bot_id(homeserver_pair), member.user_id)
    assert "only a moderator" in answer.content["body"]
    assert JoinRequest.objects.get(pk=alice.pk).decided_by == ""

    moderator.client.send_reaction(moderators_room, notice, ONE, txn_id=txn())
    moderator.client.send_event(
        moderators_room,
        "m.room.message",
        {"msgtype": "m.text", "body": "!guests deny 2 Not today"},
        txn_id=txn(),
    )

    wait_for(
        lambda: JoinRequest.objects.get(pk=alice.pk).status == JoinRequest.Status.JOINED,
        what="Alice joined",
    )
    wait_for(
        lambda: JoinRequest.objects.get(pk=bob.pk).status == JoinRequest.Status.DENIED,
        what="Bob denied",
    )
    approval = AuditEntry.objects.get(action=AuditEntry.Action.APPROVED)
    # (Not via_guestgate: main's push of the bot's invite may record it first, as GuestGate's.)
    assert (approval.actor, approval.subject) == (moderator.user_id, alice.user_id)
    wait_for_text(
        moderator.client,
        moderators_room,
        notice,
        lambda t: "Nobody is waiting" in t,
        "the closed notice",
    )


# -- The notice's language, a moderators' room for several call rooms, more than 9 guests ----


def test_a_room_set_to_german_gets_a_german_notice_and_german_answers(
    guestgate_web: str,
    mona: ModeratorBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    homeserver_pair: LocalPair,
) -> None:
    waiting_guests(guestgate_web, invite_token, "Alice")
    notice = open_notice(call_room)
    assert "1 guest is waiting" in notice_text(moderator.client, call_room.room_id, notice)

    saved = mona.post(f"/moderator/rooms/{call_room.pk}/settings", notice_language="de")
    assert saved.status_code == 302
    assert CallRoom.objects.get(pk=call_room.pk).notice_language == "de"

    text = wait_for_text(
        moderator.client,
        call_room.room_id,
        notice,
        lambda t: "1 Gast wartet darauf, Team call beizutreten:" in t,
        "the open notice edited into German",
    )
    assert "1. Alice (Guest)" in text
    waiting_guests(guestgate_web, invite_token, "Bob")
    text = wait_for_text(
        moderator.client, call_room.room_id, notice, lambda t: "2. Bob" in t, "Bob listed"
    )
    assert "2 Gäste warten darauf, Team call beizutreten:" in text
    assert "Reagieren Sie mit der Nummer eines Gastes" in text
    moderator.client.send_event(
        call_room.room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "!guests dance"},
        txn_id=txn(),
    )
    answer = bot_reply_to(
        moderator.client, call_room.room_id, bot_id(homeserver_pair), moderator.user_id
    )
    assert answer.content["body"].startswith("GuestGate versteht")


@pytest.fixture
def review_room(
    homeserver_pair: LocalPair, moderator: Person, main_bot: MatrixClient
) -> tuple[CallRoom, str]:
    """A second call room of Mona's, "Review", registered and ready, and its invite token."""
    bot = bot_id(homeserver_pair)
    room_id = moderator.client.create_room(
        name="Review",
        join_rule="knock",
        invite=[bot],
        power_level_users={bot: 50},
        power_level_events={CALL_MEMBER_EVENT: 0},
    )
    main_bot.join(room_id, via=[homeserver_pair.main.server_name])
    room = call_room_register(room=room_id, registered_by=moderator.user_id)
    assert room.status == CallRoom.Status.READY, room.problems
    return room, invite_link_create(room=room, created_by=moderator.user_id).token


def test_two_call_rooms_share_a_moderators_room_each_with_its_own_notice(
    guestgate_web: str,
    mona: ModeratorBrowser,
    invite_token: str,
    call_room: CallRoom,
    review_room: tuple[CallRoom, str],
    moderator: Person,
    moderators_room: str,
    homeserver_pair: LocalPair,
) -> None:
    review, review_token = review_room
    assert settings_saved(mona, call_room, moderators_room) == ""
    assert settings_saved(mona, review, moderators_room) == ""
    alice, carol = waiting_guests(guestgate_web, invite_token, "Alice", "Carol")
    (bob,) = waiting_guests(guestgate_web, review_token, "Bob")

    team_notice, review_notice = open_notice(call_room), open_notice(review)
    assert team_notice != review_notice
    wait_for_text(
        moderator.client,
        moderators_room,
        team_notice,
        lambda t: "2 guests are waiting to join Team call:" in t and "2. Carol" in t,
        "the Team call's notice",
    )
    review_text = wait_for_text(
        moderator.client,
        moderators_room,
        review_notice,
        lambda t: "1 guest is waiting to join Review:" in t,
        "the Review's notice",
    )
    assert "1. Bob (Guest)" in review_text and "Alice" not in review_text
    assert '"!guests Review: let in 2"' in review_text

    def say(body: str, reply_to: str = "") -> str:
        content: dict[str, object] = {"msgtype": "m.text", "body": body}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return moderator.client.send_event(moderators_room, "m.room.message", content, txn_id=txn())

    # Number 1 of the Review's notice is Bob, not Alice.
    moderator.client.send_reaction(moderators_room, review_notice, ONE, txn_id=txn())
    wait_for(lambda: status_of(bob) == JoinRequest.Status.JOINED, what="Bob joined")
    assert status_of(alice) == JoinRequest.Status.WAITING

    # Which room's number 1? The bot asks, and nobody is let in.
    say("!guests let in 1")
    answer = bot_reply_to(
        moderator.client, moderators_room, bot_id(homeserver_pair), moderator.user_id
    )
    assert "Several call rooms post their notices here" in answer.content["body"]
    assert JoinRequest.objects.get(pk=alice.pk).decided_by == ""

    say("!guests let in 2", reply_to=team_notice)
    wait_for(lambda: status_of(carol) == JoinRequest.Status.JOINED, what="Carol joined")
    say("!guests team call: let in 1")
    wait_for(lambda: status_of(alice) == JoinRequest.Status.JOINED, what="Alice joined")
    for notice in (team_notice, review_notice):
        wait_for_text(
            moderator.client, moderators_room, notice, lambda t: "Nobody is waiting" in t, "closed"
        )


def status_of(request: JoinRequest) -> str:
    return JoinRequest.objects.get(pk=request.pk).status


def test_eleven_guests_numbers_past_nine_by_command_and_reactions_reach_whom_was_seen(
    guestgate_web: str,
    mona: ModeratorBrowser,
    invite_token: str,
    call_room: CallRoom,
    moderator: Person,
    homeserver_pair: LocalPair,
) -> None:
    room_id = call_room.room_id
    names = [f"Queue{n:02d}" for n in range(1, 12)]
    guests = waiting_guests(guestgate_web, invite_token, *names)
    notice = open_notice(call_room)
    text = wait_for_text(
        moderator.client, room_id, notice, lambda t: "11 guests are waiting" in t, "all eleven"
    )
    assert "11. Queue11 (Guest)" in text
    # main's time of the notice, which a command written before it is compared with
    posted = moderator.client.event(room_id, notice).origin_server_ts
    assert WaitingNotice.objects.get(room=call_room).opened_ts == posted
    assert '"!guests let in 10" or "!guests let in <name>"' in text

    # Guest 1 is let in on the dashboard; the notice is edited, the others keep their numbers.
    mona.post(f"/moderator/requests/{guests[0].pk}/approve")
    wait_for_text(
        moderator.client, room_id, notice, lambda t: "10 guests are waiting" in t, "one fewer"
    )
    moderator.client.send_reaction(room_id, notice, TWO, txn_id=txn())
    wait_for(lambda: status_of(guests[1]) == JoinRequest.Status.JOINED, what="Queue02 joined")
    assert status_of(guests[2]) == JoinRequest.Status.WAITING  # not the second in line now

    moderator.client.send_reaction(room_id, notice, ONE, txn_id=txn())
    answer = bot_reply_to(moderator.client, room_id, bot_id(homeserver_pair), moderator.user_id)
    # (Refused either way: off the list, or, if the reaction beat the edit's record, handled.)
    assert re.search(
        r"No guest number 1 is waiting|Guest number 1 was already handled", answer.content["body"]
    )

    for body in ("!guests let in 11", "!guests let in queue10"):
        moderator.client.send_event(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}, txn_id=txn()
        )
    wait_for(lambda: status_of(guests[10]) == JoinRequest.Status.JOINED, what="Queue11 joined")
    wait_for(lambda: status_of(guests[9]) == JoinRequest.Status.JOINED, what="Queue10 joined")
    assert [status_of(guest) for guest in guests[2:9]] == [JoinRequest.Status.WAITING] * 7
