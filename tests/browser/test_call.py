"""The call in the lobby: Element Call's embedded build, hosted by the lobby as a widget
(frontend/call-host.js), against the real pair, the local focus (devtools.rtcfocus) and a real
Chromium with fake camera and microphone. Media is not tested: no LiveKit server runs here;
the focus's "LiveKit" accepts and stays silent, which keeps Element Call in its call view."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from matrix import CALL_MEMBER_EVENT, MatrixClient
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

LIVE = 30_000  # ms
LOBBY_URL = re.compile(r"/lobby/[0-9a-f-]{36}$")


@pytest.fixture
def guest_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(permissions=["camera", "microphone"])
    yield context.new_page()
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


def test_explore(
    guest_page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    page = guest_page
    page.on("console", lambda m: print("console:", m.type, m.text[:300]))
    ask_to_join(page, guestgate_web, invite_token, "Alice")
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")
    expect(page.locator("#call-frame")).to_be_visible(timeout=LIVE)
    page.wait_for_timeout(8000)
    page.screenshot(path="var/test-screens/call-explore.png")
    frame = page.frame(name=None, url=re.compile(r"/call/"))
    print(frame and frame.evaluate("Array.from(document.querySelectorAll('button,[role=button]')).map(b => (b.getAttribute('aria-label')||'') + '|' + b.textContent + '|' + (b.dataset.testid||'')).join('\\n')"))
    print(page.locator("#call").get_attribute("data-refused-capabilities"))
    request = JoinRequest.objects.get()
    print(request.user_id, main_bot.state_event(call_room.room_id, CALL_MEMBER_EVENT, f"_{request.user_id}_" ))
