from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from devtools.localpair.config import authority_files
from devtools.rtcfocus import Focus, FocusServer
from ops.callfocus import call_origin


@pytest.fixture(autouse=True)
def _shared_database(transactional_db: None, guestgate_web: str, no_faults_left: None) -> None:
    """Integration tests see what GuestGate's processes commit, so no test transaction."""


@pytest.fixture
def guest(guestgate_web: str) -> Iterator[GuestBrowser]:
    """A guest's browser over real HTTP (devtools.guestbrowser): cookies, CSRF, long polls."""
    browser = GuestBrowser(guestgate_web)
    yield browser
    browser.close()


@pytest.fixture
def focus_of_another_server(homeserver_pair: LocalPair, settings: Any) -> Iterator[str]:
    """The dev focus (devtools.rtcfocus, as ``make run`` runs it) trusting another homeserver
    than the pair's guest server, configured as GuestGate's only focus: it refuses the guest
    server's OpenID tokens, as a service that does not reach that server would."""
    focus = Focus(
        guest_server_name="elsewhere.test",
        ca_file=str(authority_files(homeserver_pair).certificate),
        livekit_url="ws://127.0.0.1:9",
        origins=[call_origin()],
    )
    server = FocusServer(("127.0.0.1", 0), focus)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.RTC_TRANSPORTS = [{"type": "livekit", "livekit_service_url": url}]
    yield url
    server.shutdown()
    server.server_close()
