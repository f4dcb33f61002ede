"""GuestGate's own processes for the integration and browser tests, on the test database.

The web server and a Celery worker run as real processes, as in production: the main
homeserver pushes appservice transactions to the web server at any time, and the worker does
the homeserver calls. Both reach the homeservers through fault proxies, so a test can make a
chosen homeserver request fail while everything else stays real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from devtools import processes
from devtools.localpair import LocalPair
from tests.faultproxy import FaultProxy


@pytest.fixture(scope="session")
def guest_hs_proxy(homeserver_pair: LocalPair) -> Iterator[FaultProxy]:
    proxy = FaultProxy(homeserver_pair.guest.client_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def main_hs_proxy(homeserver_pair: LocalPair) -> Iterator[FaultProxy]:
    proxy = FaultProxy(homeserver_pair.main.client_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def no_faults_left(guest_hs_proxy: FaultProxy, main_hs_proxy: FaultProxy) -> Iterator[None]:
    yield
    guest_hs_proxy.clear()
    main_hs_proxy.clear()


@pytest.fixture(scope="session")
def process_env(
    django_db_setup: None,
    homeserver_pair: LocalPair,
    guest_hs_proxy: FaultProxy,
    main_hs_proxy: FaultProxy,
    django_db_blocker: Any,
) -> Iterator[dict[str, str]]:
    """The environment of GuestGate's processes: the test database, homeservers via proxies."""
    yield {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GUESTGATE_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "GUEST_HS_URL": guest_hs_proxy.url,
        "GUEST_HS_PUBLIC_URL": homeserver_pair.guest.client_url,
        "MAIN_HS_URL": main_hs_proxy.url,
        # A dead worker is seen within about 3 s (ops/workers.py), not 30.
        "GUESTGATE_WORKER_HEARTBEAT_SECONDS": "1",
    }
    # The processes are stopped (their fixtures ended first). PostgreSQL ends their sessions a
    # moment after they exit; dropping the test database before that fails.
    with django_db_blocker.unblock():
        _wait_for_other_database_sessions_to_end()


def _wait_for_other_database_sessions_to_end(timeout: float = 3.0) -> None:
    if connection.vendor != "postgresql":
        return
    import psycopg

    getattr(connection, "close_pool", lambda: None)()  # this process's pooled connections
    connection.close()
    deadline = time.monotonic() + timeout
    # Asked from the maintenance database: a session of ours on the test database would be
    # one more that has to end (through Django's connection, the pool would open again).
    params = {**connection.get_connection_params(), "dbname": "postgres"}
    test_database = connection.settings_dict["NAME"]
    with psycopg.connect(**params, autocommit=True) as own:
        while True:
            others = own.execute(
                "SELECT pid, backend_start, state, left(query, 80) FROM pg_stat_activity "
                "WHERE datname = %s",
                [test_database],
            ).fetchall()
            if not others or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if others:
            # Nothing of GuestGate runs any more: a session left is a connection a test leaked
            # (the browser tests leak one that Django keeps in Playwright's loop context).
            print(f"\nending sessions left on the test database: {others}", file=sys.stderr)
            own.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [test_database],
            )
            ended_by = time.monotonic() + 5
            while time.monotonic() < ended_by and own.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [test_database]
            ).fetchone() != (0,):
                time.sleep(0.05)


def _log_file(name: str) -> Path:
    path = settings.VAR_DIR / "test-logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def guestgate_web(process_env: dict[str, str], homeserver_pair: LocalPair) -> Iterator[str]:
    """GuestGate's web server, where the main homeserver pushes and guests browse."""
    appservice_url = homeserver_pair.appservice_url
    log_path = _log_file("web")
    with log_path.open("wb") as log:
        command = processes.runserver_command(appservice_url.removeprefix("http://"))
        process = processes.spawn([*command, "--skip-checks"], env=process_env, log=log)
    processes.wait_until_ready(
        process,
        lambda: processes.appservice_answering(appservice_url),
        what="GuestGate's web server",
        log_path=log_path,
    )
    yield appservice_url
    processes.stop(process)


class Worker:
    """The Celery worker process of the tests, which a test may kill and start again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = _log_file("worker")
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        marker = f"--- worker start {self.starts} ---\n".encode()
        with self.log_path.open("ab") as log:
            log.write(marker)
            log.flush()
            self.process = processes.spawn(processes.worker_command(), env=self.env, log=log)
        processes.wait_until_ready(
            self.process,
            lambda: processes.worker_ready(self.log_path, since=marker),
            what="the Celery worker",
            log_path=self.log_path,
        )

    def kill(self) -> None:
        """SIGKILL, as the out-of-memory killer or a lost machine would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)


@pytest.fixture(scope="session")
def celery_worker(process_env: dict[str, str]) -> Iterator[Worker]:
    """A real Celery worker on the configured broker (Redis in CI, files locally)."""
    processes.queue_emptied(process_env)
    _log_file("worker").write_bytes(b"")
    worker = Worker(process_env)
    worker.start()
    yield worker
    worker.stop()
