"""The lobby in each state a guest meets, on a phone and a desktop: what it says and offers,
a moderator's message arriving live, and axe-core finding no serious or critical violation.
Screenshots: ``var/screenshots/lobby-<state>-<screen>.png``.

A real Chromium on GuestGate's real web server, with the real worker and homeserver pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from rooms.announcements import announcement_send
from rooms.expiry import expire_accounts
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_approve, join_request_deny, join_request_remove_from_call
from tests.browser.axe import SCREENS, page_width, screenshot, serious_violations
from tests.conftest import Person

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

LIVE = 30_000  # ms a live change may take to reach the lobby (accounts, knocks, federation)
LOBBY_URL = re.compile(r"/lobby/[0-9a-f-]{36}$")


class Guests:
    """Guests on one screen, each in a browser of their own (their own cookies), in which
    axe-core may be injected (the strict CSP bypassed, as in tests/browser/axe.py)."""

    def __init__(self, browser: Browser, screen: str, base_url: str, token: str) -> None:
        self.browser, self.screen, self.base_url, self.token = browser, screen, base_url, token
        self.contexts: list[BrowserContext] = []
        self.problems: list[str] = []

    def arrive(self, name: str) -> Page:
        context = self.browser.new_context(
            bypass_csp=True,
            locale="en-GB",
            permissions=["camera", "microphone"],
            **SCREENS[self.screen],
        )
        self.contexts.append(context)
        page = context.new_page()
        page.goto(f"{self.base_url}/j/{self.token}")
        page.get_by_label("Your name").fill(name)
        page.get_by_role("button", name="Ask to join").click()
        expect(page).to_have_url(LOBBY_URL)
        expect(title(page)).to_have_text("Waiting for a moderator", timeout=LIVE)
        page.evaluate("window.stillTheSameDocument = true")
        return page

    def look_at(self, page: Page, state: str) -> None:
        """Screenshot, width and axe-core; problems are said together at the end."""
        name = f"lobby-{state}-{self.screen}"
        screenshot(page, name)
        width, screen_width = page_width(page), SCREENS[self.screen]["viewport"]["width"]
        if width > screen_width:
            self.problems.append(f"{name}: {width} px wide on a {screen_width} px screen")
        for violation in serious_violations(page):
            where = ", ".join(str(node["target"]) for node in violation["nodes"][:5])
            self.problems.append(f"{name}: {violation['id']}: {violation['help']} at {where}")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def guests(
    browser: Browser, screen: str, guestgate_web: str, invite_token: str
) -> Iterator[Guests]:
    opened = Guests(browser, screen, guestgate_web, invite_token)
    yield opened
    opened.close()


def title(page: Page) -> Locator:
    return page.locator("#status-title")


def request_of(name: str) -> JoinRequest:
    return JoinRequest.objects.select_related("room").get(
        display_name=f"{name} (Guest)", status__in=[*JoinRequest.OPEN, JoinRequest.Status.JOINED]
    )


def still_the_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.stillTheSameDocument === true"))


def test_the_lobby_in_every_state_says_what_to_do_next_and_is_accessible(
    guests: Guests, call_room: CallRoom, moderator: Person
) -> None:
    # Waiting, then a moderator's line arrives live.
    ann = guests.arrive("Ann")
    expect(ann.get_by_text("You are joining as")).to_contain_text("Ann")
    expect(ann.locator("#announcement")).to_be_hidden()
    guests.look_at(ann, "waiting")
    announcement_send(room=call_room, moderator=moderator.user_id, text="We start at <b>10:05</b>")
    expect(ann.locator("#announcement-text")).to_have_text("We start at <b>10:05</b>", timeout=LIVE)
    expect(ann.locator("#announcement b")).to_have_count(0)
    assert still_the_same_document(ann), "the lobby reloaded instead of updating live"
    guests.look_at(ann, "waiting-message")

    # Cancelled: "Ask again" is offered, and works.
    ann.get_by_role("button", name="Stop waiting").click()
    expect(title(ann)).to_have_text("You left the waiting room", timeout=LIVE)
    expect(ann.get_by_role("button", name="Ask again")).to_be_visible()
    expect(ann.get_by_text("You are joining as")).to_be_hidden()
    guests.look_at(ann, "cancelled")
    ann.get_by_role("button", name="Ask again").click()
    expect(title(ann)).to_have_text("Waiting for a moderator", timeout=LIVE)

    # Denied with the moderator's own words, quoted as theirs; "Ask again" (not banned).
    ben = guests.arrive("Ben")
    join_request_deny(request_of("Ben"), moderator=moderator.user_id, reason="Members only")
    expect(title(ben)).to_have_text("You were not let in", timeout=LIVE)
    expect(ben.locator("#status-reason")).to_have_text("The moderator said: Members only")
    expect(ben.get_by_role("button", name="Ask again")).to_be_visible()
    guests.look_at(ben, "denied")

    # Let in, with the call; then removed from it.
    cy = guests.arrive("Cy")
    join_request_approve(request_of("Cy"), moderator=moderator.user_id)
    expect(title(cy)).to_have_text("You are in the call", timeout=LIVE)
    expect(cy.get_by_text("You are joining as")).to_be_hidden()
    expect(cy.locator("#call")).to_be_attached()
    guests.look_at(cy, "joined")
    join_request_remove_from_call(request_of("Cy"), moderator=moderator.user_id)
    expect(title(cy)).to_have_text("You were removed from the call", timeout=LIVE)
    expect(cy.locator("#status-reason")).to_be_hidden()
    guests.look_at(cy, "removed")

    # Let in, then the guest pass expires (what beat does every minute, by the real worker).
    di = guests.arrive("Di")
    join_request_approve(request_of("Di"), moderator=moderator.user_id)
    expect(title(di)).to_have_text("You are in the call", timeout=LIVE)
    account = request_of("Di").guest
    assert account is not None
    GuestAccount.objects.filter(pk=account.pk).update(
        created_at=timezone.now() - account.policy.account_lifetime - timedelta(minutes=1)
    )
    for batch in accounts_claim_due():
        expire_accounts.delay(batch)
    expect(title(di)).to_have_text("This guest pass has expired", timeout=LIVE)
    expect(di.get_by_role("button", name="Ask again")).to_be_visible()
    guests.look_at(di, "expired")

    assert not guests.problems, "\n".join(guests.problems)
