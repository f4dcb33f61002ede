"""A moderator's one line to the waiting guests reaching their lobbies live, on the real web
server and worker, with the real homeserver pair behind the guests' knocks."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from rooms.models import AuditEntry, CallRoom, JoinRequest
from tests.conftest import Person

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


@pytest.fixture
def mona(guestgate_web: str, moderator: Person) -> Iterator[ModeratorBrowser]:
    """The room's moderator, signed in at the dashboard."""
    browser = ModeratorBrowser(guestgate_web)
    assert browser.sign_in(moderator.user_id, moderator.password).status_code == 302
    yield browser
    browser.close()


@pytest.fixture
def bob(guestgate_web: str) -> Iterator[GuestBrowser]:
    browser = GuestBrowser(guestgate_web)
    yield browser
    browser.close()


def waiting(guest: GuestBrowser, token: str, name: str) -> dict[str, Any]:
    assert guest.ask_to_join(token, name).status_code == 302
    return guest.wait_for("waiting", timeout=60)


def test_a_message_to_everyone_waiting_answers_their_long_polls(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    bob: GuestBrowser,
    call_room: CallRoom,
    invite_token: str,
    moderator: Person,
) -> None:
    alice_state = waiting(guest, invite_token, "Alice")
    bob_state = waiting(bob, invite_token, "Bob")

    with ThreadPoolExecutor(2) as pool:
        # Both lobbies are waiting on their long poll when the moderator writes.
        alice_poll = pool.submit(guest.status, alice_state["version"])
        bob_poll = pool.submit(bob.status, bob_state["version"])
        sent = mona.post(f"/moderator/rooms/{call_room.pk}/message", message="We start at 10:05")
        alice_now, bob_now = alice_poll.result(timeout=30), bob_poll.result(timeout=30)

    assert sent.status_code == 302
    assert alice_now["announcement"] == bob_now["announcement"] == "We start at 10:05"
    assert alice_now["status"] == "waiting"
    audited = AuditEntry.objects.filter(action=AuditEntry.Action.MESSAGED)
    assert sorted(audited.values_list("subject_name", flat=True)) == [
        "Alice (Guest)",
        "Bob (Guest)",
    ]
    assert {entry.actor for entry in audited} == {moderator.user_id}


def test_a_message_to_one_guest_reaches_only_that_guest(
    mona: ModeratorBrowser,
    guest: GuestBrowser,
    bob: GuestBrowser,
    call_room: CallRoom,
    invite_token: str,
) -> None:
    waiting(guest, invite_token, "Alice")
    bob_state = waiting(bob, invite_token, "Bob")
    bob_request = JoinRequest.objects.get(display_name="Bob (Guest)")

    with ThreadPoolExecutor(1) as pool:
        bob_poll = pool.submit(bob.status, bob_state["version"])
        sent = mona.post(f"/moderator/requests/{bob_request.pk}/message", message="One moment, Bob")
        bob_now = bob_poll.result(timeout=30)

    assert sent.status_code == 302
    assert bob_now["announcement"] == "One moment, Bob"
    assert guest.status()["announcement"] == ""


def test_a_message_that_is_not_one_line_is_refused_and_reaches_nobody(
    mona: ModeratorBrowser, guest: GuestBrowser, call_room: CallRoom, invite_token: str
) -> None:
    before = waiting(guest, invite_token, "Alice")

    refused = mona.post(f"/moderator/rooms/{call_room.pk}/message", message="one\ntwo")

    assert refused.status_code == 400
    assert "one line of plain text" in refused.text
    after = guest.status()
    assert after["announcement"] == "" and after["version"] == before["version"]
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.MESSAGED).exists()
