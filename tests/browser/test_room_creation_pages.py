"""A moderator on a phone: a new call room in one step, its link shown again, a revocation
confirmed and undone. Real Chromium, GuestGate's real web server, the real main homeserver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from rooms.models import CallRoom
from tests.browser.screenshots import screenshot
from tests.conftest import Person

pytestmark = [pytest.mark.browser, pytest.mark.homeservers]

PHONE_WIDTH = 390


@pytest.fixture
def moderator_phone(browser: Browser, guestgate_web: str, moderator: Person) -> Iterator[Page]:
    """The moderator, signed in on a phone-sized, touch browser of their own."""
    context = browser.new_context(
        viewport={"width": PHONE_WIDTH, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.goto(f"{guestgate_web}/moderator/sign-in")
    page.get_by_label("Matrix id").fill(moderator.user_id)
    page.get_by_label("Password").fill(moderator.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    yield page
    context.close()


def fits_the_phone(page: Page) -> bool:
    width = page.evaluate("document.documentElement.scrollWidth")
    return bool(width <= PHONE_WIDTH)


def test_a_moderator_creates_a_room_on_a_phone_and_shows_its_link_again(
    moderator_phone: Page, guestgate_web: str
) -> None:
    page = moderator_phone
    page.get_by_role("link", name="Create a new call room").click()
    page.get_by_label("Name").fill("Town hall")
    page.get_by_label("Topic (optional)").fill("Questions welcome")
    page.get_by_role("button", name="Create the room").click()

    expect(page.get_by_role("heading", name="Invite link to Town hall")).to_be_visible(
        timeout=30_000
    )
    url = page.get_by_role("textbox", name="Invite link").input_value()
    assert "/j/" in url
    expect(page.locator("figure.qr svg")).to_be_visible()
    assert fits_the_phone(page)
    screenshot(page, "room-created-phone")
    assert CallRoom.objects.get(name="Town hall").status == CallRoom.Status.READY

    page.get_by_role("link", name="All links of this room").click()
    page.get_by_role("link", name="Show link, QR code and poster of First link").click()
    expect(page.get_by_role("textbox", name="Invite link")).to_have_value(url)
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Printable poster").click()
    poster = opened.value
    expect(poster.get_by_role("heading", name="Join Town hall")).to_be_visible()
    poster.close()

    page.get_by_role("link", name="All links of this room").click()
    page.get_by_role("link", name="Revoke First link").click()
    expect(page.get_by_role("heading", name="Revoke “First link”?")).to_be_visible()
    assert fits_the_phone(page)
    page.get_by_role("button", name="Revoke the link").click()
    expect(page.get_by_text("“First link” is revoked.")).to_be_visible()
    screenshot(page, "link-revoked-undo-phone")
    page.get_by_role("button", name="Undo revoking First link").click()

    expect(page.get_by_text("“First link” works again.")).to_be_visible()
    assert fits_the_phone(page)
    guest = page.context.browser.new_page() if page.context.browser else None
    assert guest is not None
    guest.goto(url)
    expect(guest.get_by_label("Your name")).to_be_visible()
    guest.close()
