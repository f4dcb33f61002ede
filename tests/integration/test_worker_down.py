"""A Celery worker that is dead and not started again: /healthz and the lobby of a guest
whose pass is being made say so, and the guest goes on once a worker runs (issue 12, item 7)."""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest

from devtools.guestbrowser import GuestBrowser
from rooms.models import CallRoom
from tests.processes import Worker
from tests.waiting import wait_for

pytestmark = pytest.mark.homeservers

WORKER_DOWN = "the service's background worker is not running"


def worker_check(web: str) -> dict[str, Any]:
    check: dict[str, Any] = httpx.get(f"{web}/healthz").json()["checks"]["worker"]
    return check


def test_a_dead_worker_is_said_by_healthz_and_the_lobby_and_the_guest_goes_on_when_one_runs(
    guestgate_web: str, invite_token: str, call_room: CallRoom, celery_worker: Worker
) -> None:
    wait_for(lambda: worker_check(guestgate_web)["ok"], what="the worker's first heartbeat")
    guest = GuestBrowser(guestgate_web)
    try:
        celery_worker.kill()
        wait_for(
            lambda: not worker_check(guestgate_web)["ok"], what="/healthz to notice the dead worker"
        )
        assert "no Celery worker heard for" in worker_check(guestgate_web)["detail"]

        guest.ask_to_join(invite_token, "Wanda")
        assert WORKER_DOWN in html.unescape(guest.lobby().text)
        assert WORKER_DOWN in guest.status()["message"]

        celery_worker.start()
        guest.wait_for("waiting", timeout=60)
        assert worker_check(guestgate_web)["ok"] is True
    finally:
        if celery_worker.process is None or celery_worker.process.poll() is not None:
            celery_worker.start()
        guest.close()
