"""A moderator and a guest in two browsers: the knock appears live, the approval reaches the
guest live; the invite-link poster prints on A4 and Letter."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from rooms.models import CallRoom
from tests.browser.screenshots import screenshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]


def test_a_knock_appears_live_and_the_approval_reaches_the_guest_live(
    moderator_page: Page,
    phone: Page,
    guestgate_web: str,
    call_room: CallRoom,
    invite_token: str,
) -> None:
    moderator_page.goto(f"{guestgate_web}/moderator/")
    moderator_page.get_by_role("link", name="Team call").click()
    expect(moderator_page.get_by_text("Nobody is waiting.")).to_be_visible()
    moderator_page.evaluate("window.notReloaded = true")

    phone.goto(f"{guestgate_web}/j/{invite_token}")
    phone.get_by_label("Your name").fill("Alice")
    phone.get_by_role("button", name="Ask to join").click()
    expect(phone.get_by_role("heading", name="Waiting for a moderator")).to_be_visible(
        timeout=30_000
    )

    let_in = moderator_page.get_by_role("button", name="Let in Alice (Guest)")
    expect(let_in).to_be_visible(timeout=30_000)
    expect(moderator_page).to_have_title("(1) Team call \u2013 GuestGate")
    assert moderator_page.evaluate("window.notReloaded") is True
    screenshot(moderator_page, "dashboard-knock-desktop")
    let_in.click()

    expect(phone.get_by_role("heading", name="You are in the call")).to_be_visible(timeout=30_000)
    expect(moderator_page.get_by_text("Nobody is waiting.")).to_be_visible(timeout=30_000)


def test_a_denial_with_a_reason_from_the_dashboard_reaches_the_guest(
    moderator_page: Page,
    page: Page,
    guestgate_web: str,
    call_room: CallRoom,
    invite_token: str,
) -> None:
    page.goto(f"{guestgate_web}/j/{invite_token}")
    page.get_by_label("Your name").fill("Mallory")
    page.get_by_role("button", name="Ask to join").click()
    expect(page.get_by_role("heading", name="Waiting for a moderator")).to_be_visible(
        timeout=30_000
    )
    moderator_page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}")

    moderator_page.get_by_label("Reason for Mallory (Guest)").fill("Members only today")
    moderator_page.get_by_role("button", name="Deny Mallory (Guest)", exact=True).click()

    expect(page.locator("#status-reason")).to_have_text(
        "The moderator said: Members only today", timeout=30_000
    )


@pytest.mark.parametrize("paper", ["A4", "Letter"])
def test_the_invite_poster_prints_on_one_page(
    moderator_page: Page,
    guestgate_web: str,
    call_room: CallRoom,
    paper: str,
) -> None:
    moderator_page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}/links")
    moderator_page.get_by_label("Label").fill("Poster at reception")
    moderator_page.get_by_role("button", name="Make the link").click()
    expect(moderator_page.get_by_role("heading", name="Invite link to Team call")).to_be_visible()
    with moderator_page.context.expect_page() as opened:
        moderator_page.get_by_role("button", name="Printable poster").click()
    poster = opened.value
    poster.wait_for_load_state()

    expect(poster.get_by_role("heading", name="Join Team call")).to_be_visible()
    pdf = poster.pdf(format=paper, print_background=True)
    screenshot(poster, f"poster-{paper}-desktop")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1  # one sheet of paper
