"""Outages of the main homeserver, against the real pair, a real worker and GuestGate's web
server: when main is back, new guests get in at once (issue 12, item 6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from devtools.localpair.process import down, up
from guestgate import homeservers
from matrix import MatrixClient
from rooms.models import CallRoom, JoinRequest
from tests.faultproxy import FaultProxy
from tests.waiting import wait_for

pytestmark = [pytest.mark.homeservers, pytest.mark.usefixtures("celery_worker")]


@pytest.fixture
def main_away(homeserver_pair: LocalPair) -> Iterator[None]:
    """Main stopped for the test's first part; running again at its end whatever happened."""
    down(homeserver_pair, roles=("main",))
    yield
    up(homeserver_pair)
    # Leave the pair as the next test expects it: the guest server tried main while it was
    # away and may still be backing off from it, which would hold back the next test's
    # federation (a guest's rename waited out that backoff once in CI).
    wait_for(homeservers.main_answers, what="main to answer again")
    homeservers.guest_server_retry_main_now()


def guest_browser(url: str) -> GuestBrowser:
    return GuestBrowser(url)


def knocks_refused_by_the_guest_server(proxy: FaultProxy) -> list[tuple[str, str, int]]:
    return [seen for seen in proxy.seen if "/knock/" in seen[1] and seen[2] == 502]


def test_a_new_guest_knocks_soon_after_main_comes_back_from_an_outage(
    guestgate_web: str,
    invite_token: str,
    call_room: CallRoom,
    homeserver_pair: LocalPair,
    guest_hs_proxy: FaultProxy,
    main_bot: MatrixClient,
    main_away: None,
) -> None:
    first, second = guest_browser(guestgate_web), guest_browser(guestgate_web)
    try:
        # Main is away: the guest server fails to reach it, and backs off from it.
        first.ask_to_join(invite_token, "Olga")
        wait_for(
            lambda: knocks_refused_by_the_guest_server(guest_hs_proxy),
            what="the guest server to fail to reach main",
        )

        up(homeserver_pair)  # main is back
        second.ask_to_join(invite_token, "Otto")

        second.wait_for("waiting", timeout=45)
        newest = JoinRequest.objects.order_by("-pk").first()
        assert newest is not None
        member = main_bot.member(call_room.room_id, newest.user_id)
        assert member is not None and member.membership == "knock"
        first.wait_for("waiting", timeout=45)  # the guest who came during the outage too
    finally:
        first.close()
        second.close()
