"""The pages as people meet them, on a phone and a desktop, each checked with axe-core and
photographed into var/screenshots/: the home page taking a poster's code, moderator sign-in,
the dashboard's lists (relative times kept current, the recent list telling the truth now,
"Deny and ban" asking first, with and without JavaScript) and the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from accounts.services import default_policy
from devtools.guestbrowser import GuestBrowser
from rooms.expiry import expire_accounts
from rooms.invite_links import grouped
from rooms.models import CallRoom, JoinRequest
from tests.browser.axe import SCREENS, assert_accessible, axe_context, page_width
from tests.conftest import Person
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]


def fits(page: Page, screen: str) -> None:
    """No sideways scrolling: the content is no wider than the screen."""
    width = SCREENS[screen]["viewport"]["width"]
    assert page_width(page) <= width, f"{page.url} is {page_width(page)} px wide on a {screen}"


def signed_in(page: Page, guestgate_web: str, moderator: Person) -> Page:
    page.goto(f"{guestgate_web}/moderator/sign-in")
    page.get_by_label("Matrix id").fill(moderator.user_id)
    page.get_by_label("Password").fill(moderator.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    return page


@pytest.fixture
def knocking(guestgate_web: str) -> Iterator[list[GuestBrowser]]:
    guests: list[GuestBrowser] = []
    yield guests
    for guest in guests:
        guest.close()


def knock(guests: list[GuestBrowser], guestgate_web: str, token: str, name: str) -> GuestBrowser:
    guest = GuestBrowser(guestgate_web)
    guests.append(guest)
    assert guest.ask_to_join(token, name).status_code == 302
    guest.wait_for("waiting", timeout=60)
    return guest


# -- the home page -------------------------------------------------------------------------


def test_the_home_page_takes_the_posters_code_with_or_without_dashes(
    visitor: Page, screen: str, guestgate_web: str, call_room: CallRoom, invite_token: str
) -> None:
    visitor.goto(f"{guestgate_web}/")
    expect(visitor.get_by_role("heading", name="Join a call")).to_be_visible()
    assert_accessible(visitor, f"home-{screen}")
    fits(visitor, screen)

    visitor.get_by_label("Enter the code from your invitation").fill(grouped(invite_token))
    visitor.get_by_role("button", name="Continue").click()
    expect(visitor.get_by_role("heading", name="Join Team call")).to_be_visible()

    visitor.goto(f"{guestgate_web}/")
    visitor.get_by_label("Enter the code from your invitation").fill(invite_token.upper())
    visitor.get_by_role("button", name="Continue").click()
    expect(visitor.get_by_role("heading", name="Join Team call")).to_be_visible()


def test_a_wrong_code_is_said_on_the_home_page_next_to_the_field(
    visitor: Page, screen: str, guestgate_web: str
) -> None:
    visitor.goto(f"{guestgate_web}/")
    field = visitor.get_by_label("Enter the code from your invitation")
    field.fill("abcde-fghij-klmno-pqrst-234567")

    visitor.get_by_role("button", name="Continue").click()

    expect(visitor.locator("#code-error")).to_have_text(re.compile("does not exist"))
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value("abcde-fghij-klmno-pqrst-234567")
    assert visitor.url == f"{guestgate_web}/"
    assert_accessible(visitor, f"home-wrong-code-{screen}")
    fits(visitor, screen)


# -- moderator sign-in ---------------------------------------------------------------------


def test_the_sign_in_page_styles_the_password_like_the_matrix_id(
    visitor: Page, screen: str, guestgate_web: str
) -> None:
    visitor.goto(f"{guestgate_web}/moderator/sign-in")

    looks = visitor.evaluate(
        """() => ['id_matrix_id', 'id_password'].map((id) => {
             const s = getComputedStyle(document.getElementById(id));
             return [s.borderTopWidth, s.borderRadius, s.paddingTop, s.fontSize, s.width];
           })"""
    )
    assert looks[0] == looks[1]
    assert_accessible(visitor, f"sign-in-{screen}")
    fits(visitor, screen)


# -- the dashboard -------------------------------------------------------------------------


def test_the_dashboard_says_how_long_ago_in_short_words_and_keeps_it_current(
    visitor: Page,
    screen: str,
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
    knocking: list[GuestBrowser],
) -> None:
    knock(knocking, guestgate_web, invite_token, "Alice")
    page = signed_in(visitor, guestgate_web, moderator)
    page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")

    alice = page.locator("li.knock", has_text="Alice (Guest)")
    expect(alice.locator(".meta")).to_contain_text("asked just now")
    expect(alice).not_to_contain_text("minutes")
    assert_accessible(page, f"dashboard-{screen}")
    fits(page, screen)

    # Three minutes later (the moment moved back): the page says so by itself.
    page.evaluate(
        """() => document.querySelector('li.knock time[data-relative]')
                   .setAttribute('datetime', new Date(Date.now() - 181000).toISOString())"""
    )
    expect(alice.locator("time")).to_have_text("3 min ago", timeout=30_000)


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_deny_and_ban_asks_first_and_cancelling_leaves_the_guest_waiting(
    browser: Browser,
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
    knocking: list[GuestBrowser],
    javascript: bool,
) -> None:
    trudy = knock(knocking, guestgate_web, invite_token, "Trudy")
    for context in axe_context(browser, "desktop", java_script_enabled=javascript):
        page = signed_in(context.new_page(), guestgate_web, moderator)
        page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")
        page.get_by_label("Reason for Trudy (Guest)").fill("spam")

        page.get_by_role("button", name="Deny and ban Trudy (Guest)").click()

        expect(page.get_by_role("heading", name="Deny and ban Trudy (Guest)?")).to_be_visible()
        expect(page.get_by_label("Reason (optional)")).to_have_value("spam")
        if javascript:
            assert_accessible(page, "ban-confirmation-desktop")
        assert trudy.status()["status"] == "waiting"

        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("button", name="Let in Trudy (Guest)")).to_be_visible()
        assert trudy.status()["status"] == "waiting"

        page.get_by_role("button", name="Deny and ban Trudy (Guest)").click()
        page.get_by_label("Reason (optional)").fill("spam, again")  # the page's own field
        page.get_by_role("button", name="Deny and ban", exact=True).click()
        assert trudy.wait_for("banned")["reason"] == "spam, again"
        recent = page.locator(".recent li", has_text="Trudy (Guest)")
        expect(recent.locator("[data-call]")).to_have_text("denied and banned")


def test_recently_shows_what_is_true_now_of_a_let_in_guest(
    visitor: Page,
    screen: str,
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
    knocking: list[GuestBrowser],
) -> None:
    dora = knock(knocking, guestgate_web, invite_token, "Dora")
    page = signed_in(visitor, guestgate_web, moderator)
    page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")
    page.get_by_role("button", name="Let in Dora (Guest)").click()
    dora.wait_for("joined", timeout=60)
    recent = page.locator(".recent li", has_text="Dora (Guest)")
    expect(recent.locator("[data-call]")).to_have_text("not in the call yet")
    expect(recent.locator(".meta")).to_contain_text(f"let in by {moderator.user_id}")
    assert_accessible(page, f"dashboard-recent-{screen}")
    fits(page, screen)

    # Her guest pass runs out by the policy, as the expiry sweep finds it.
    account = JoinRequest.objects.get(room=call_room, display_name="Dora (Guest)").guest
    assert account is not None
    due = timezone.now() - default_policy().account_lifetime - timedelta(minutes=1)
    GuestAccount.objects.filter(pk=account.pk).update(created_at=due, last_seen_at=due)
    for batch in accounts_claim_due():
        expire_accounts.delay(batch)
    wait_for(
        lambda: GuestAccount.objects.get(pk=account.pk).status == GuestAccount.Status.EXPIRED,
        what="Dora's pass expired",
    )
    page.reload()

    expect(recent.locator("[data-call]")).to_have_text("guest pass expired")


# -- the audit log -------------------------------------------------------------------------


def test_the_audit_log_fits_a_phone_and_dates_read_the_viewers_way(
    visitor: Page,
    screen: str,
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
    knocking: list[GuestBrowser],
) -> None:
    knock(knocking, guestgate_web, invite_token, "Erin")
    page = signed_in(visitor, guestgate_web, moderator)
    page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")
    page.get_by_label("Reason for Erin (Guest)").fill(
        "This call is for the members of the association only; please ask the secretary"
    )
    page.get_by_role("button", name="Deny Erin (Guest)", exact=True).click()

    page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}/audit")

    assert page.locator("html").get_attribute("lang") == "en-GB"  # the browser's locale
    first = page.locator(".audit-log time").first
    # en-GB: day, month, year ("30 Nov 2026, 14:05:09"), not the US "Nov 30, 2026".
    expect(first).to_have_text(re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d:\d\d$"))
    assert_accessible(page, f"audit-{screen}")
    fits(page, screen)
