"""The call in the lobby of an encrypted room: the lobby runs the Rust crypto for the guest's
device, Element Call's media keys go between the guests only encrypted, and arrive only
encrypted; against the real pair and a real Chromium (media itself is not tested here: no
LiveKit server runs, see tests/browser/test_call.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, Request, Response, expect

from matrix import MatrixClient
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve
from tests.browser.test_call import (
    LIVE,
    MEGOLM,
    ask_to_join,
    call_membership,
    in_the_call,
    the_guest_device,
)
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

KEYS = "io.element.call.encryption_keys"


class Guest:
    """A guest's tab, with what it sent to other devices and what its console said."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.console: list[str] = []
        self.wasm_headers: list[dict[str, str]] = []
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("console", lambda message: self.console.append(message.text))
        if os.environ.get("CALL_DEBUG"):
            page.on("console", lambda m: print("console:", m.text[:300]))
            page.on("pageerror", lambda e: print("pageerror:", e))
            page.on(
                "response", lambda r: print("status:", r.status, r.url) if r.status >= 400 else None
            )
            page.on("requestfailed", lambda r: print("failed:", r.url, r.failure))

    def _request(self, request: Request) -> None:
        self.requests.append(f"{request.method} {request.url}")

    def _response(self, response: Response) -> None:
        if response.url.endswith(".wasm"):
            self.wasm_headers.append(response.headers)

    def sent_to_device(self, event_type: str) -> int:
        self.page.evaluate("0")
        return sum(
            1 for r in self.requests if r.startswith("PUT ") and f"/sendToDevice/{event_type}/" in r
        )

    def downloaded_wasm(self) -> bool:
        self.page.evaluate("0")  # Playwright delivers the page's events during its calls
        return any(r.split("?")[0].endswith(".wasm") for r in self.requests)

    def counters(self) -> dict[str, int | str]:
        counters: dict[str, int | str] = self.page.evaluate("window.guestgateCallHost.counters")
        return counters

    def lobby_policy(self) -> str:
        return self.page.request.get(self.page.url).headers["content-security-policy"]


@pytest.fixture
def new_guest(browser: Browser) -> Iterator[Callable[[], Guest]]:
    contexts = []

    def make() -> Guest:
        context = browser.new_context(permissions=["camera", "microphone"])
        contexts.append(context)
        return Guest(context.new_page())

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def encrypted_knock_room(knock_room: str, moderator: Person) -> str:
    """The knock room with end-to-end encryption on, before GuestGate registers it."""
    moderator.client.set_state(knock_room, "m.room.encryption", {"algorithm": MEGOLM})
    return knock_room


def let_in(guest: Guest, guestgate_web: str, invite_token: str, name: str) -> None:
    ask_to_join(guest.page, guestgate_web, invite_token, name)
    request = JoinRequest.objects.get(display_name__startswith=name)
    join_request_approve(request, moderator="@mona:main")


def a_call_member_on_main(guest: Guest, main_bot: MatrixClient, call_room: CallRoom) -> None:
    user_id, device_id = the_guest_device(guest.page)
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id),
        what=f"{user_id}'s call membership on main",
    )


def a_media_key_arrived_encrypted(guest: Guest) -> None:
    wait_for(
        lambda: guest.counters()["keysFedEncrypted"],
        what="a media key that arrived encrypted, given to Element Call",
    )


def test_two_guests_in_an_encrypted_room_exchange_their_media_keys_only_encrypted(
    new_guest: Callable[[], Guest],
    guestgate_web: str,
    encrypted_knock_room: str,
    call_room: CallRoom,
    invite_token: str,
    main_bot: MatrixClient,
) -> None:
    assert call_room.encrypted
    alice, bob = new_guest(), new_guest()
    ask_to_join(alice.page, guestgate_web, invite_token, "Alice")
    ask_to_join(bob.page, guestgate_web, invite_token, "Bob")
    # While they wait, their lobbies fetch the crypto (the page knows the room encrypts).
    for guest in (alice, bob):
        wait_for(guest.downloaded_wasm, what="the crypto's WebAssembly loaded while waiting")
        assert "'wasm-unsafe-eval'" in guest.lobby_policy()
    # Served as WebAssembly, which the browser compiles while it streams in (the cache headers
    # of the deployed server: tests/unit/test_call_serving.py).
    wait_for(
        lambda: alice.page.evaluate("0") or alice.wasm_headers, what="the WebAssembly's answer"
    )
    assert alice.wasm_headers[0]["content-type"] == "application/wasm"
    # Let in one after the other, without delay: the local focus's silent "LiveKit" keeps
    # Element Call in its call view only for a while (its connection times out).
    for guest, name in ((alice, "Alice"), (bob, "Bob")):
        join_request_approve(
            JoinRequest.objects.get(display_name__startswith=name), moderator="@mona:main"
        )
        expect(guest.page.get_by_role("heading", level=2)).to_have_text(
            "You are in the call", timeout=LIVE
        )
    in_the_call(alice.page)
    in_the_call(bob.page)

    for guest in (alice, bob):
        a_call_member_on_main(guest, main_bot, call_room)
    for guest in (alice, bob):
        a_media_key_arrived_encrypted(guest)
        assert guest.counters()["crypto"] == "on"
        assert guest.sent_to_device("m.room.encrypted") >= 1
        assert guest.sent_to_device(KEYS) == 0
        assert guest.counters()["clearDropped"] == 0

    # Bob reloads his lobby: the same device, its crypto restored from IndexedDB (a new Olm
    # account would upload one-time keys the server already has for the device), back in the
    # call. (Element Call's own key exchange after the reload is not awaited: the local
    # focus's silent "LiveKit" has made the first calls time out by then.)
    bob.console.clear()
    bob.page.reload()
    in_the_call(bob.page)
    a_call_member_on_main(bob, main_bot, call_room)
    wait_for(lambda: bob.counters()["crypto"] == "on", what="Bob's crypto started again")
    assert any("Restored an Olm account" in line for line in bob.console), bob.console
    assert not any("Created a new Olm account" in line for line in bob.console)
    assert not any("already exists" in line for line in bob.console)


def test_the_lobby_of_a_room_that_does_not_encrypt_loads_no_crypto(
    new_guest: Callable[[], Guest],
    guestgate_web: str,
    call_room: CallRoom,
    invite_token: str,
) -> None:
    assert not call_room.encrypted
    carol = new_guest()
    let_in(carol, guestgate_web, invite_token, "Carol")
    in_the_call(carol.page)

    assert "wasm-unsafe-eval" not in carol.lobby_policy()
    assert not carol.downloaded_wasm()
    assert carol.counters()["crypto"] == "off"


def test_a_room_that_starts_encrypting_after_registration_is_known_to_the_next_lobby(
    new_guest: Callable[[], Guest],
    guestgate_web: str,
    call_room: CallRoom,
    invite_token: str,
    moderator: Person,
) -> None:
    assert not call_room.encrypted
    # Main pushes the room's new m.room.encryption to GuestGate's appservice.
    moderator.client.set_state(call_room.room_id, "m.room.encryption", {"algorithm": MEGOLM})
    wait_for(
        lambda: CallRoom.objects.get(pk=call_room.pk).encrypted,
        what="the pushed encryption recorded",
    )
    dave = new_guest()
    let_in(dave, guestgate_web, invite_token, "Dave")
    in_the_call(dave.page)

    assert "'wasm-unsafe-eval'" in dave.lobby_policy()
    wait_for(lambda: dave.counters()["crypto"] == "on", what="the crypto started")
    expect(dave.page.locator("#call")).to_have_attribute(
        "data-call-encrypted", "true", timeout=LIVE
    )
