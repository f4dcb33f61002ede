from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.guestbrowser import GuestBrowser


@pytest.fixture(autouse=True)
def _shared_database(transactional_db: None, guestgate_web: str, no_faults_left: None) -> None:
    """Integration tests see what GuestGate's processes commit, so no test transaction."""


@pytest.fixture
def guest(guestgate_web: str) -> Iterator[GuestBrowser]:
    """A guest's browser over real HTTP (devtools.guestbrowser): cookies, CSRF, long polls."""
    browser = GuestBrowser(guestgate_web)
    yield browser
    browser.close()
