"""A real Chromium for the guest pages, against GuestGate's real web server and worker.

Playwright drives Debian's Chromium (``apt-get install chromium``); it never downloads a browser
of its own. Each test gets a fresh browser context, so cookies and sessions are per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.axe import SCREENS, axe_context
from tests.browser.screenshots import contact_sheet_write
from tests.conftest import Person


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The contact sheet of the screenshots taken (var/screenshots/index.html), also when a
    test failed: those are the ones a person wants to see."""
    contact_sheet_write()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # The embedded call (tests/browser/test_call.py) asks for a camera and a microphone.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@pytest.fixture(scope="package")
def browser(process_env: dict[str, str]) -> Iterator[Browser]:
    """Headless Chromium, started once for all the browser tests.

    Playwright's sync API keeps its asyncio loop marked as running in this thread for as long
    as it lives, and Django then refuses every query (SynchronousOnlyOperation, see
    microsoft/playwright-pytest#29). These tests are plain synchronous code, so Django's guard
    is switched off exactly while the browser lives: package scope, so the rest of the suite
    runs with the guard on, and after ``process_env``, so GuestGate's processes never inherit it.
    """
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":  # CI installs Chromium: a missing one is a failure
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)", pytrace=False)
        pytest.skip("Chromium is not installed (apt-get install chromium); browser tests skipped")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture(autouse=True)
def _database_connections_closed() -> Iterator[None]:
    """While the loop is marked running, Django keeps this test's database connections in a
    context of their own, which pytest-django's clean-up does not reach: close them here, or
    each browser test leaves a session open (PostgreSQL then cannot drop the test database)."""
    yield
    connections.close_all()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop-sized tab in a browser context of its own (no cookies from other tests)."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized, touch tab in a browser context of its own."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    yield context.new_page()
    context.close()


@pytest.fixture
def moderator_page(browser: Browser, guestgate_web: str, moderator: Person) -> Iterator[Page]:
    """The room's moderator, signed in at the dashboard in a browser of their own."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{guestgate_web}/moderator/sign-in")
    page.get_by_label("Matrix id").fill(moderator.user_id)
    page.get_by_label("Password").fill(moderator.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    yield page
    context.close()


@pytest.fixture(autouse=True)
def _shared_database(transactional_db: None, guestgate_web: str, no_faults_left: None) -> None:
    """Browser tests see what GuestGate's processes commit, so no test transaction."""


# Pages checked with axe-core, on each screen of tests/browser/axe.py (a phone, a desktop).


@pytest.fixture(params=list(SCREENS))
def screen(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def context(browser: Browser, screen: str) -> Iterator[BrowserContext]:
    yield from axe_context(browser, screen)


@pytest.fixture
def visitor(context: BrowserContext) -> Page:
    return context.new_page()
