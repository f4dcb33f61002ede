"""The guest pages as a guest sees them: a real Chromium on GuestGate's real web server, with a
real Celery worker and the real homeserver pair behind it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Dialog, Locator, Page, expect

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from rooms.expiry import expire_accounts
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve
from tests.browser.screenshots import screenshot
from tests.conftest import Person

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

LIVE = 30_000  # ms a live change may take to reach the lobby (accounts, knocks, federation)
LOBBY_URL = re.compile(r"/lobby/[0-9a-f-]{36}$")
CALL_URL = re.compile(r"^https://call\.element\.io/room/#/\?roomId=")


def open_invite(page: Page, guestgate_web: str, token: str) -> None:
    page.goto(f"{guestgate_web}/j/{token}")


def ask_to_join(page: Page, guestgate_web: str, token: str, name: str) -> None:
    open_invite(page, guestgate_web, token)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Ask to join").click()
    expect(page).to_have_url(LOBBY_URL)


def status_in(page: Page) -> Locator:
    """The lobby's status line (the heading of its live region)."""
    return page.get_by_role("heading", level=2)


def reason_in(page: Page) -> Locator:
    return page.locator("#status-reason")


def remember_this_page(page: Page) -> None:
    """Mark the loaded document; a reload or a navigation would lose the mark."""
    page.evaluate("window.stillTheSameDocument = true")


def is_the_same_page(page: Page) -> bool:
    return bool(page.evaluate("window.stillTheSameDocument === true"))


def fits_the_screen(page: Page) -> bool:
    """Nothing sticks out sideways (no horizontal scrolling on a phone)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def the_guest() -> str:
    return JoinRequest.objects.get().user_id


def test_a_guest_on_a_phone_asks_to_join_and_follows_the_lobby_into_the_call(
    phone: Page, guestgate_web: str, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    open_invite(phone, guestgate_web, invite_token)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Join Team call")
    phone.get_by_label("Your name").press_sequentially("Alice")
    phone.get_by_role("button", name="Ask to join").tap()

    expect(phone).to_have_url(LOBBY_URL)
    remember_this_page(phone)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Team call")
    expect(phone.get_by_text("You are joining as")).to_contain_text("Alice")
    expect(status_in(phone)).to_have_text("Waiting for a moderator", timeout=LIVE)
    expect(phone.get_by_role("button", name="Stop waiting")).to_be_visible()

    # The moderator lets Alice in from their own Matrix client.
    moderator.client.invite(call_room.room_id, the_guest(), reason="welcome")

    expect(status_in(phone)).to_have_text("You are in the call", timeout=LIVE)
    # The call is in the page: no second door to it elsewhere while it shows (the link is
    # kept, hidden, for when the call here cannot start).
    expect(phone.locator("#call-frame")).to_be_visible(timeout=LIVE)
    expect(phone.get_by_role("link", name=re.compile("Open the call"))).to_be_hidden()
    expect(phone.locator("#call-link")).to_have_attribute("href", CALL_URL)
    expect(phone.get_by_role("button", name="Stop waiting")).to_be_hidden()
    assert is_the_same_page(phone), "the lobby reloaded instead of updating live"
    assert fits_the_screen(phone)
    screenshot(phone, "guest-joined-phone")


def test_the_lobby_of_a_guest_in_the_call_says_when_the_guest_pass_expired(
    page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom
) -> None:
    ask_to_join(page, guestgate_web, invite_token, "Jo")
    remember_this_page(page)
    expect(status_in(page)).to_have_text("Waiting for a moderator", timeout=LIVE)
    join_request_approve(JoinRequest.objects.get(), moderator="@mona:main")
    expect(status_in(page)).to_have_text("You are in the call", timeout=LIVE)

    # What beat does every minute, for an account made due: the real worker expires it.
    account = JoinRequest.objects.get().guest
    assert account is not None
    GuestAccount.objects.filter(pk=account.pk).update(
        created_at=timezone.now() - account.policy.account_lifetime - timedelta(minutes=1)
    )
    for batch in accounts_claim_due():
        expire_accounts.delay(batch)

    expect(status_in(page)).to_have_text("This guest pass has expired", timeout=LIVE)
    expect(page.get_by_role("link", name="Open the call")).to_be_hidden()
    expect(page.locator("#session-json")).to_be_empty()
    assert is_the_same_page(page), "the lobby reloaded instead of updating live"


def test_a_guest_who_is_not_let_in_sees_the_moderators_reason(
    page: Page, guestgate_web: str, invite_token: str, call_room: CallRoom, moderator: Person
) -> None:
    ask_to_join(page, guestgate_web, invite_token, "Mallory")
    remember_this_page(page)
    expect(status_in(page)).to_have_text("Waiting for a moderator", timeout=LIVE)

    moderator.client.kick(call_room.room_id, the_guest(), reason="Not on the guest list")

    expect(status_in(page)).to_have_text("You were not let in", timeout=LIVE)
    expect(reason_in(page)).to_have_text("The moderator said: Not on the guest list")
    expect(page.get_by_role("button", name="Stop waiting")).to_be_hidden()
    expect(page.get_by_role("link", name="Open the call")).to_be_hidden()
    assert is_the_same_page(page), "the lobby reloaded instead of updating live"
    screenshot(page, "guest-denied-desktop")


def test_a_matrix_address_as_a_name_is_refused_next_to_the_field(
    page: Page, guestgate_web: str, invite_token: str
) -> None:
    open_invite(page, guestgate_web, invite_token)
    name = page.get_by_label("Your name")

    name.fill("@bob:example.org")
    page.get_by_role("button", name="Ask to join").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Please type a name, not a Matrix address (like @name:server)."
    )
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description(re.compile(r"not a Matrix address"))
    expect(name).to_have_value("@bob:example.org")  # kept, so the guest can correct it
    assert not JoinRequest.objects.exists()


def test_a_name_with_html_in_it_is_shown_as_text(
    page: Page, guestgate_web: str, invite_token: str
) -> None:
    alerts: list[str] = []

    def note_and_dismiss(dialog: Dialog) -> None:
        alerts.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", note_and_dismiss)

    ask_to_join(page, guestgate_web, invite_token, "<img src=x onerror=alert(1)>Eve")
    expect(status_in(page)).to_have_text("Waiting for a moderator", timeout=LIVE)

    expect(page.get_by_text("You are joining as")).to_contain_text(
        "<img src=x onerror=alert(1)>Eve"
    )
    expect(page.locator("main img")).to_have_count(0)  # the header has the logo
    assert alerts == []  # no script of the name ever ran


def test_a_guest_who_stops_waiting_is_told_they_left(
    page: Page, guestgate_web: str, invite_token: str
) -> None:
    ask_to_join(page, guestgate_web, invite_token, "Carol")
    expect(status_in(page)).to_have_text("Waiting for a moderator", timeout=LIVE)

    page.get_by_role("button", name="Stop waiting").click()

    expect(status_in(page)).to_have_text("You left the waiting room")
    expect(page.get_by_role("button", name="Stop waiting")).to_be_hidden()
    assert JoinRequest.objects.get().status == JoinRequest.Status.CANCELLED
