"""GuestGate's own processes for the integration tests, on the test database.

The main homeserver pushes appservice transactions to the web server at any time, also
between tests, so it runs as a real process (like in production), not in a test thread that
pytest's database guard could refuse.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from guestgate.localpair import LocalPair
from tests.waiting import wait_for


def _process_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GUESTGATE_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
    }


def _log_file(name: str) -> Path:
    path = settings.VAR_DIR / "test-logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def guestgate_web(django_db_setup: None, homeserver_pair: LocalPair) -> Iterator[str]:
    """GuestGate's web server where the main homeserver pushes, on the test database."""
    address = homeserver_pair.appservice_url.removeprefix("http://")
    log = _log_file("web").open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", address, "--noreload", "--skip-checks"],
        cwd=settings.BASE_DIR,
        env=_process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"GuestGate's web server exited; see {log.name}")
        try:
            return (
                httpx.post(f"{homeserver_pair.appservice_url}/_matrix/app/v1/ping").status_code
                == 401
            )
        except httpx.TransportError:
            return False

    wait_for(answering, what="GuestGate's web server", timeout=30)
    yield homeserver_pair.appservice_url
    _stop(process)
    log.close()


@pytest.fixture(autouse=True)
def _shared_database(transactional_db: None, guestgate_web: str) -> None:
    """Integration tests see what GuestGate's processes commit, so no test transaction."""
