from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from devtools.localpair.config import authority_files
from tests.jwt_lookalike import JwtLookalike


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
def jwt_lookalike(homeserver_pair: LocalPair, settings: Any) -> Iterator[type[JwtLookalike]]:
    """A LiveKit JWT service that checks OpenID tokens with the guest homeserver for real,
    configured as GuestGate's only focus."""
    handler = type(
        "Lookalike",
        (JwtLookalike,),
        {
            "ca_file": str(authority_files(homeserver_pair).certificate),
            "refuse_from": [],
            "checked": [],
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.RTC_TRANSPORTS = [{"type": "livekit", "livekit_service_url": url}]
    yield handler
    server.shutdown()
    server.server_close()
