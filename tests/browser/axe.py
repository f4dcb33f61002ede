"""axe-core in the browser tests: every page checked for serious and critical accessibility
violations, and a screenshot of it kept for a person to look at.

axe-core (npm devDependency) is injected as a script; GuestGate's strict CSP would refuse it,
so pages checked here are opened in a browser context with ``bypass_csp=True``
(``axe_context``); the CSP itself is tested elsewhere (tests/unit/test_security.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.screenshots import screenshot

__all__ = ["SCREENS", "assert_accessible", "axe_context", "page_width", "screenshot"]

AXE_SCRIPT = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")

_PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
#: The screens every page is checked on: a phone and a desktop in the light scheme, and the
#: phone in the dark one (base.css follows prefers-color-scheme; contrast is checked in both).
SCREENS: dict[str, dict[str, Any]] = {
    "phone": {**_PHONE, "color_scheme": "light"},
    "desktop": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "phone-dark": {**_PHONE, "color_scheme": "dark"},
}


def axe_context(browser: Browser, screen: str, **options: Any) -> Iterator[BrowserContext]:
    """A browser context of its own on ``screen``, in which axe-core may be injected."""
    context = browser.new_context(bypass_csp=True, locale="en-GB", **SCREENS[screen], **options)
    yield context
    context.close()


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """What axe-core finds on the page as it is now, serious or critical only."""
    if not AXE_SCRIPT.exists():
        pytest.fail(f"{AXE_SCRIPT} is missing: run npm ci (make .venv/.installed does)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_SCRIPT.read_text())
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [v for v in violations if v["impact"] in SERIOUS]


def assert_accessible(page: Page, name: str) -> None:
    """Save a screenshot as ``var/screenshots/<name>.png``, then fail on any serious or
    critical axe-core violation, naming each rule and the elements it found."""
    screenshot(page, name)
    found = serious_violations(page)
    assert not found, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in found
    )


def page_width(page: Page) -> int:
    """How wide the page's content is: wider than the viewport means a sideways scroll."""
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width
