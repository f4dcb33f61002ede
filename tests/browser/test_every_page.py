"""Every page but the lobby, on a phone and a desktop, in the states people meet it: axe-core
finds no serious or critical violation, nothing is wider than the screen, the organisation's
name heads it, and a screenshot of each is kept as ``var/screenshots/<page>-<screen>.png``
for a person to look at.

Each test walks through its pages and reports every problem it found at the end, so one run
shows all that is wrong, not only the first page. The error pages (500 and 503) are made by
the real handler (``ops.views.server_error``) with a real fault raised in this process, and
handed to the browser at GuestGate's address, so they load the real stylesheets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import RequestFactory
from playwright.sync_api import Browser, Page, Route, expect

from devtools.guestbrowser import GuestBrowser
from ops.ratelimit import Limit, rate_limit_hit
from ops.views import server_error
from rooms.invite_links import invite_link_create
from rooms.models import CallRoom
from tests.browser.axe import SCREENS, axe_context, page_width, screenshot, serious_violations
from tests.conftest import Person

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]


@pytest.fixture
def guests(guestgate_web: str) -> Iterator[list[GuestBrowser]]:
    opened: list[GuestBrowser] = []
    yield opened
    for guest in opened:
        guest.close()


class PageChecks:
    """What is wrong with the pages looked at on one screen, gathered to be said at once."""

    def __init__(self, screen: str) -> None:
        self.screen = screen
        self.problems: list[str] = []

    def look_at(self, page: Page, name: str) -> None:
        screenshot(page, f"{name}-{self.screen}")
        header = page.locator(".site-header .brand")
        if header.count() and settings.BRANDING.name not in header.inner_text():
            self.problems.append(f"{name}: the header does not name the organisation")
        width, screen_width = page_width(page), SCREENS[self.screen]["viewport"]["width"]
        if width > screen_width:
            self.problems.append(f"{name}: {width} px wide on a {screen_width} px screen")
        for violation in serious_violations(page):
            where = ", ".join(str(node["target"]) for node in violation["nodes"][:5])
            self.problems.append(
                f"{name}: {violation['id']} ({violation['impact']}): {violation['help']} at {where}"
            )

    def assert_none(self) -> None:
        assert not self.problems, f"on a {self.screen}:\n" + "\n".join(self.problems)


def knock(guests: list[GuestBrowser], guestgate_web: str, token: str, name: str) -> GuestBrowser:
    guest = GuestBrowser(guestgate_web)
    guests.append(guest)
    assert guest.ask_to_join(token, name).status_code == 302
    guest.wait_for("waiting", timeout=60)
    return guest


def failed_page(page: Page, url: str, fault: Exception) -> None:
    """``url`` answered by the real 500 handler while ``fault`` is being handled."""
    request = RequestFactory().get(url, HTTP_ACCEPT_LANGUAGE="en-GB")
    try:
        raise fault
    except Exception:
        response = server_error(request)
    html = response.content.decode()

    def answer(route: Route) -> None:
        route.fulfill(status=response.status_code, content_type="text/html", body=html)

    page.route(url, answer)
    page.goto(url)


def sign_in(page: Page, guestgate_web: str, moderator: Person, password: str) -> None:
    page.goto(f"{guestgate_web}/moderator/sign-in")
    page.get_by_label("Matrix id").fill(moderator.user_id)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


# -- the pages guests see ------------------------------------------------------------------


def test_every_guest_page_is_accessible_and_fits_the_screen(
    visitor: Page, screen: str, guestgate_web: str, call_room: CallRoom, moderator: Person
) -> None:
    checks = PageChecks(screen)
    token = invite_link_create(room=call_room, created_by=moderator.user_id).token

    visitor.goto(f"{guestgate_web}/")
    expect(visitor.get_by_role("heading", name="Join a call")).to_be_visible()
    checks.look_at(visitor, "home")

    visitor.goto(f"{guestgate_web}/j/{token}")
    expect(visitor.get_by_role("heading", name="Join Team call")).to_be_visible()
    checks.look_at(visitor, "join")

    visitor.get_by_label("Your name").fill("@mallory:example.org")
    visitor.get_by_role("button", name="Ask to join").click()
    expect(visitor.locator("#name-error")).to_be_visible()
    expect(visitor.get_by_label("Your name")).to_have_attribute("aria-invalid", "true")
    checks.look_at(visitor, "join-error")

    visitor.goto(f"{guestgate_web}/j/abcdefghijklmnopqrstuvwxyz")
    expect(visitor.get_by_role("heading", name="This invite link cannot be used")).to_be_visible()
    checks.look_at(visitor, "link-error")

    # A link of its own whose joins this minute are used up (the web server's shared counter).
    crowded = invite_link_create(room=call_room, created_by=moderator.user_id, label="crowded")
    per_link = Limit("join-link", settings.JOIN_RATE_PER_LINK, 60)
    for _attempt in range(2):  # once more if the minute ended between filling and asking
        while rate_limit_hit(per_link, str(crowded.link.pk)).allowed:
            pass
        visitor.goto(f"{guestgate_web}/j/{crowded.token}")
        visitor.get_by_label("Your name").fill("Crowd")
        visitor.get_by_role("button", name="Ask to join").click()
        if visitor.get_by_role("heading", name="Too many attempts").is_visible():
            break
    expect(visitor.get_by_role("heading", name="Too many attempts")).to_be_visible()
    checks.look_at(visitor, "rate-limited")

    failed_page(visitor, f"{guestgate_web}/busy", OperationalError("database is locked"))
    expect(visitor.get_by_role("heading", name="Too busy")).to_be_visible()
    checks.look_at(visitor, "error-503")

    failed_page(visitor, f"{guestgate_web}/broken", RuntimeError("a fault"))
    expect(visitor.get_by_role("heading", name="Something went wrong")).to_be_visible()
    checks.look_at(visitor, "error-500")

    checks.assert_none()


# -- the moderators' pages -----------------------------------------------------------------


def test_every_moderator_page_is_accessible_and_fits_the_screen(
    visitor: Page,
    screen: str,
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
    guests: list[GuestBrowser],
) -> None:
    checks = PageChecks(screen)
    room_url = f"{guestgate_web}/moderator/rooms/{call_room.pk}"
    knock(guests, guestgate_web, invite_token, "Alice")
    knock(guests, guestgate_web, invite_token, "Bob")

    visitor.goto(f"{guestgate_web}/moderator/sign-in")
    checks.look_at(visitor, "sign-in")
    sign_in(visitor, guestgate_web, moderator, "not the password")
    expect(visitor.locator("#form-errors")).to_be_visible()
    checks.look_at(visitor, "sign-in-error")
    sign_in(visitor, guestgate_web, moderator, moderator.password)
    expect(visitor.get_by_role("heading", name="Your rooms")).to_be_visible()
    expect(visitor.locator(".rooms li", has_text="Team call")).to_contain_text("2 waiting")
    checks.look_at(visitor, "dashboard")

    visitor.goto(room_url)
    expect(visitor.locator("li.knock")).to_have_count(2)
    checks.look_at(visitor, "room-waiting")

    visitor.get_by_role("button", name="Deny and ban Bob (Guest)").click()
    expect(visitor.get_by_role("heading", name="Deny and ban Bob (Guest)?")).to_be_visible()
    checks.look_at(visitor, "ban-confirm")

    visitor.goto(room_url)
    visitor.get_by_role("button", name="Let in Alice (Guest)").click()
    expect(visitor.locator(".recent li", has_text="Alice (Guest)")).to_be_visible(timeout=30_000)
    checks.look_at(visitor, "room-recent")

    visitor.goto(f"{room_url}/settings")
    expect(visitor.get_by_role("heading", name="Settings of Team call")).to_be_visible()
    checks.look_at(visitor, "room-settings")

    visitor.goto(f"{guestgate_web}/moderator/rooms/new")
    expect(visitor.get_by_role("heading", name="New call room")).to_be_visible()
    checks.look_at(visitor, "room-new")

    visitor.goto(f"{room_url}/links")
    visitor.get_by_label("Label", exact=True).fill("Reception desk")
    visitor.get_by_role("button", name="Make the link").click()
    expect(visitor.get_by_role("heading", name="Invite link to Team call")).to_be_visible()
    checks.look_at(visitor, "link")
    link_url = visitor.url

    visitor.goto(f"{room_url}/links")
    expect(visitor.locator("li.knock", has_text="Reception desk")).to_be_visible()
    checks.look_at(visitor, "links")

    visitor.goto(f"{link_url}/poster")
    expect(visitor.get_by_role("heading", name="Join Team call")).to_be_visible()
    expect(visitor.locator("header.brand")).to_have_text(settings.BRANDING.name)
    checks.look_at(visitor, "poster")

    visitor.goto(f"{link_url}/revoke")
    expect(visitor.get_by_role("heading", name="Revoke “Reception desk”?")).to_be_visible()
    checks.look_at(visitor, "revoke-confirm")

    visitor.goto(f"{room_url}/audit")
    expect(visitor.locator(".audit-log li").first).to_be_visible()
    checks.look_at(visitor, "audit")

    checks.assert_none()


def test_the_rooms_tools_keep_each_dot_with_the_link_after_it_on_a_phone(
    browser: Browser, guestgate_web: str, moderator: Person, call_room: CallRoom
) -> None:
    """The line "Play a sound… · Invite links and QR codes · Audit log · Room settings" wraps
    on a phone; a "·" must never be left alone at the end or the start of a line."""
    for context in axe_context(browser, "phone"):
        page = context.new_page()
        sign_in(page, guestgate_web, moderator, moderator.password)
        page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")

        tools = page.locator(".toolbar")
        expect(tools.locator(".item")).to_have_count(4)
        loose_dots = tools.evaluate(
            """(line) => [...line.childNodes]
                 .filter((node) => node.nodeType === Node.TEXT_NODE)
                 .filter((node) => node.textContent.includes('·')).length"""
        )
        assert loose_dots == 0
        # Each part (its dot drawn before it) is one unbroken box, on one line.
        assert tools.locator(".item").evaluate_all(
            "(items) => items.map((item) => item.getClientRects().length)"
        ) == [1, 1, 1, 1]
        top_of = tools.locator(".item").evaluate_all(
            "(items) => items.map((item) => Math.round(item.getBoundingClientRect().top))"
        )
        assert len(set(top_of)) > 1, "the line did not wrap on a phone: nothing was tested"
