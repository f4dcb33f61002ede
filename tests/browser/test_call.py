"""The call in the lobby: Element Call's embedded build, hosted by the lobby as a widget
(frontend/call-host.js), against the real pair, the local focus (devtools.rtcfocus) and a real
Chromium with fake camera and microphone. Media is not tested: no LiveKit server runs here;
the focus's "LiveKit" accepts and stays silent, which keeps Element Call in its call view."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, FrameLocator, Page, expect

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from matrix import CALL_MEMBER_EVENT, MatrixClient
from rooms.expiry import expire_accounts
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

LIVE = 30_000  # ms
MEGOLM = "m.megolm.v1.aes-sha2"
LOBBY_URL = re.compile(r"/lobby/[0-9a-f-]{36}$")


@pytest.fixture
def guest_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(permissions=["camera", "microphone"])
    page = context.new_page()
    # GuestGate's own warnings; everything (Element Call's too) with CALL_DEBUG=1.
    everything = bool(os.environ.get("CALL_DEBUG"))
    page.on(
        "console",
        lambda m: print("console:", m.text[:300]) if everything or "GuestGate" in m.text else None,
    )
    yield page
    context.close()


def ask_to_join(page: Page, guestgate_web: str, token: str, name: str) -> None:
    page.goto(f"{guestgate_web}/j/{token}")
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Ask to join").click()
    expect(page).to_have_url(LOBBY_URL)
    expect(page.get_by_role("heading", level=2)).to_have_text(
        "Waiting for a moderator", timeout=LIVE
    )


def the_call(page: Page) -> FrameLocator:
    return page.frame_locator("#call-frame")


def call_membership(main_bot: MatrixClient, room_id: str, user_id: str, device_id: str) -> Any:
    return main_bot.state_event(room_id, CALL_MEMBER_EVENT, f"_{user_id}_{device_id}_m.call")


def in_the_call(page: Page) -> None:
    """Element Call's call view: its hang-up button is there (no lobby, no "Join" to click)."""
    expect(the_call(page).get_by_test_id("incall_leave")).to_be_visible(timeout=LIVE)


def the_guest_device(page: Page) -> tuple[str, str]:
    session = page.evaluate("JSON.parse(document.getElementById('session-json').textContent)")
    return session["userId"], session["deviceId"]


def let_in(page: Page, guestgate_web: str, invite_token: str, name: str) -> None:
    ask_to_join(page, guestgate_web, invite_token, name)
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")


def test_a_let_in_guest_is_in_the_call_without_a_click_and_hangs_up_and_rejoins(
    guest_page: Page,
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    page = guest_page
    ask_to_join(page, guestgate_web, invite_token, "Alice")
    # While Alice waits, Element Call loads out of sight and negotiates with the lobby.
    expect(page.locator("#call-frame")).to_be_attached(timeout=LIVE)
    expect(page.locator("#call-frame")).to_be_hidden()
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")

    in_the_call(page)
    assert page.locator("#call").get_attribute("data-call-preloaded") == "true"
    expect(page.get_by_text("Call mode: embedded")).to_be_visible()
    user_id, device_id = the_guest_device(page)
    membership = wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id),
        what="the guest's call membership on main",
    )
    assert membership["device_id"] == device_id
    assert membership["application"] == "m.call"
    assert page.locator("#call").get_attribute("data-refused-capabilities") is None

    # EC keeps its controls moving (a footer that hides itself): never "stable" for a click.
    the_call(page).get_by_test_id("incall_leave").dispatch_event("click")

    expect(page.get_by_text("You left the call.")).to_be_visible(timeout=LIVE)
    expect(page.locator("#call-frame")).to_have_count(0)
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id) == {},
        what="the guest's call membership on main to end",
    )

    page.get_by_role("button", name="Rejoin").click()

    in_the_call(page)
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id),
        what="the guest back in the call on main",
    )


def test_the_dashboard_follows_the_guest_in_and_out_of_the_call_and_removes_them(
    guest_page: Page,
    moderator_page: Page,
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    """The moderator's side of the call, live: in the call, left, back, removed (EC torn down,
    and the guest's call membership on main cleared by the bot)."""
    dashboard = moderator_page
    dashboard.goto(f"{guestgate_web}/moderator/")
    dashboard.get_by_role("link", name=call_room.name).click()
    ask_to_join(guest_page, guestgate_web, invite_token, "Alice")
    dashboard.get_by_role("button", name="Let in Alice (Guest)").click()

    in_the_call(guest_page)
    user_id, device_id = the_guest_device(guest_page)
    alice = dashboard.locator(".recent li", has_text="Alice (Guest)")
    expect(alice.locator("[data-call]")).to_have_attribute("data-call", "in_call", timeout=LIVE)

    the_call(guest_page).get_by_test_id("incall_leave").dispatch_event("click")
    expect(alice.locator("[data-call]")).to_have_attribute("data-call", "left", timeout=LIVE)
    expect(alice.get_by_text("left the call")).to_be_visible()

    guest_page.get_by_role("button", name="Rejoin").click()
    in_the_call(guest_page)
    expect(alice.locator("[data-call]")).to_have_attribute("data-call", "in_call", timeout=LIVE)

    alice.get_by_label("Reason for removing Alice (Guest)").fill("Wrong meeting")
    alice.get_by_role("button", name="Remove from the call: Alice (Guest)").click()
    expect(guest_page.get_by_role("heading", level=2)).to_have_text(
        "You were removed from the call", timeout=LIVE
    )
    expect(guest_page.locator("#call-frame")).to_have_count(0)
    expect(
        dashboard.locator(".recent li", has_text="Alice (Guest)").locator("[data-call]")
    ).to_have_attribute("data-call", "removed", timeout=LIVE)
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id) == {},
        what="the removed guest's call membership on main to be cleared",
    )


def test_a_guest_who_closes_the_tab_leaves_the_call_by_the_delayed_leave(
    guest_page: Page,
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    page = guest_page
    let_in(page, guestgate_web, invite_token, "Bob")
    in_the_call(page)
    user_id, device_id = the_guest_device(page)
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id),
        what="the guest's call membership on main",
    )

    page.close()  # no hang-up: only the leave EC scheduled on the guest homeserver remains

    # EC's delayed leave is 18 s, restarted every 4 s (CALL-LAB §7); then federation to main.
    wait_for(
        lambda: call_membership(main_bot, call_room.room_id, user_id, device_id) == {},
        what="the delayed leave to reach main",
        timeout=60,
    )


def test_the_lobby_ends_the_call_when_the_guest_pass_expires(
    guest_page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom
) -> None:
    page = guest_page
    let_in(page, guestgate_web, invite_token, "Carol")
    in_the_call(page)

    # What beat does every minute, for an account made due: the real worker expires it.
    account = JoinRequest.objects.get().guest
    assert account is not None
    GuestAccount.objects.filter(pk=account.pk).update(
        created_at=timezone.now() - account.policy.account_lifetime - timedelta(minutes=1)
    )
    for batch in accounts_claim_due():
        expire_accounts.delay(batch)

    expect(page.get_by_role("heading", level=2)).to_have_text(
        "This guest pass has expired", timeout=LIVE
    )
    expect(page.locator("#call-frame")).to_have_count(0)


# A widget that asks for more than a call needs, speaking the widget API by hand (postMessage):
# it answers the host's requests and records the host's answers to its own.
GREEDY_WIDGET = """<!doctype html><html><body><script>
const params = new URLSearchParams(location.hash.slice(2));
const widgetId = params.get("widgetId");
const roomId = params.get("roomId");
const userId = params.get("userId");
const deviceId = params.get("deviceId");
window.results = {};
window.granted = null;
const waiting = {};
let next = 0;
function ask(action, data) {
  const requestId = "greedy-" + next++;
  window.parent.postMessage({ api: "fromWidget", widgetId, requestId, action, data }, "*");
  return new Promise((resolve) => { waiting[requestId] = resolve; });
}
window.addEventListener("message", async (event) => {
  const message = event.data;
  if (!message || message.widgetId !== widgetId) return;
  if (message.api === "fromWidget" && message.response && waiting[message.requestId]) {
    waiting[message.requestId](message.response);
    return;
  }
  if (message.api !== "toWidget") return;
  let response = {};
  if (message.action === "supported_api_versions") {
    response = { supported_versions: ["0.0.1", "0.0.2", "org.matrix.msc2762",
      "org.matrix.msc2871", "org.matrix.msc3819", "org.matrix.msc2876"] };
  } else if (message.action === "capabilities") {
    response = { capabilities: [
      "org.matrix.msc2762.timeline:" + roomId,
      "org.matrix.msc2762.timeline:!another:example.org",
      "org.matrix.msc2762.send.event:m.room.message",
      "org.matrix.msc2762.receive.state_event:m.room.member",
      "org.matrix.msc3819.send.to_device:io.element.call.encryption_keys",
      "org.matrix.msc2762.send.state_event:org.matrix.msc3401.call.member#@someone:example.org",
    ] };
  } else if (message.action === "notify_capabilities") {
    window.granted = message.data.approved;
  }
  window.parent.postMessage({ ...message, response }, "*");
  // Preloaded, it asks once the guest is let in (the host's join); else once it may ask.
  const preloaded = params.get("preload") === "true";
  if (message.action === (preloaded ? "io.element.join" : "notify_capabilities")) {
    window.results.message = await ask("send_event",
      { type: "m.room.message", content: { msgtype: "m.text", body: "spam" }, room_id: roomId });
    window.results.otherRoom = await ask("org.matrix.msc2876.read_events",
      { type: "m.room.member", state_key: true, room_ids: ["!another:example.org"] });
    window.results.toStranger = await ask("send_to_device", { type:
      "io.element.call.encryption_keys", encrypted: false,
      messages: { "@stranger:example.org": { "*": { keys: [] } } } });
    window.results.otherState = await ask("send_event", { type:
      "org.matrix.msc3401.call.member", state_key: "@someone:example.org", content: {} });
  }
});
window.parent.postMessage({ api: "fromWidget", widgetId, requestId: "loaded",
  action: "content_loaded", data: {} }, "*");
</script></body></html>"""


def test_the_lobby_refuses_a_widget_what_a_call_does_not_need(
    guest_page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom
) -> None:
    page = guest_page
    # The host frames this widget instead of Element Call (at Element Call's address).
    page.route(
        "**/call/index.html",
        lambda route: route.fulfill(status=200, content_type="text/html", body=GREEDY_WIDGET),
    )
    ask_to_join(page, guestgate_web, invite_token, "Mallory")
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")

    widget = page.frame_locator("#call-frame").locator("body")
    wait_for(
        lambda: widget.evaluate("() => window.results.otherState"),
        what="the widget's last request answered",
        timeout=LIVE / 1000,
    )
    granted = widget.evaluate("() => window.granted")
    results = widget.evaluate("() => window.results")

    assert sorted(granted) == sorted(
        [
            f"org.matrix.msc2762.timeline:{call_room.room_id}",
            "org.matrix.msc2762.receive.state_event:m.room.member",
            "org.matrix.msc3819.send.to_device:io.element.call.encryption_keys",
        ]
    )
    refused = page.locator("#call").get_attribute("data-refused-capabilities") or ""
    assert "m.room.message" in refused and "!another:example.org" in refused
    assert "error" in results["message"]
    assert "error" in results["otherRoom"]
    assert "error" in results["toStranger"]
    assert "error" in results["otherState"]


@pytest.fixture
def encrypted_knock_room(knock_room: str, moderator: Person) -> str:
    """The knock room with end-to-end encryption on, before GuestGate registers it."""
    moderator.client.set_state(knock_room, "m.room.encryption", {"algorithm": MEGOLM})
    return knock_room


def test_in_an_encrypted_room_whose_crypto_cannot_start_the_lobby_says_so_plainly(
    guest_page: Page,
    guestgate_web: str,
    encrypted_knock_room: str,
    call_room: CallRoom,
    invite_token: str,
    main_bot: MatrixClient,
) -> None:
    page = guest_page
    # The crypto's WebAssembly does not load (a filter, a broken proxy): no crypto here.
    page.route("**/*.wasm", lambda route: route.abort())
    ask_to_join(page, guestgate_web, invite_token, "Erin")
    expect(page.locator("#call-frame")).to_be_attached(timeout=LIVE)
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")

    expect(page.get_by_text("This call is end-to-end encrypted")).to_be_visible(timeout=LIVE)
    expect(page.locator("#call-frame")).to_have_count(0)
    # The other doors: Element Call elsewhere, in a new window, and the hand-over.
    expect(page.get_by_role("link", name="Open the call in a new window")).to_be_visible()
    # No call without keys: the guest never became a call member.
    user_id, device_id = the_guest_device(page)
    assert not call_membership(main_bot, call_room.room_id, user_id, device_id)


def test_a_guest_who_checks_camera_and_microphone_first_joins_from_element_calls_lobby(
    guest_page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom
) -> None:
    page = guest_page
    ask_to_join(page, guestgate_web, invite_token, "Dana")
    page.get_by_label("Check camera and microphone first").check()
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")

    # Element Call's own lobby, where the guest chooses: its Join, not the call view.
    join = the_call(page).get_by_test_id("lobby_joinCall")
    expect(join).to_be_visible(timeout=LIVE)
    expect(the_call(page).get_by_test_id("incall_leave")).to_have_count(0)
    # While the call shows, no second door to the call elsewhere.
    expect(page.get_by_role("link", name=re.compile("Open the call"))).to_be_hidden()
    assert page.evaluate("localStorage.getItem('guestgate.call.devicesFirst')") == "true"

    join.dispatch_event("click")

    in_the_call(page)
