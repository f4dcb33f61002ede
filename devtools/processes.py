"""GuestGate's own processes as children of another: the web server, the Celery worker, beat.

One place for their command lines and for starting, waiting on and stopping them, shared by
``manage.py devstack`` (``make run``), the tests (tests/processes.py) and ``make bench``
(bench/stack.py), so the three run GuestGate the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import httpx
from django.conf import settings

CELERY = [sys.executable, "-m", "celery", "-A", "guestgate"]
#: Threads of a Celery worker: tasks wait on homeservers, not on the CPU.
WORKER_CONCURRENCY = 8
#: gunicorn's settings as deployed (Dockerfile, docker-compose.yml).
GUNICORN_CONFIG = "guestgate.gunicorn_config"


class ProcessFailed(RuntimeError):
    """A process exited, or was not ready in time; the message names its log."""


def gunicorn_command(address: str, *, workers: int) -> list[str]:
    """The web server as deployed."""
    return [
        *[sys.executable, "-m", "gunicorn", "guestgate.wsgi"],
        *["--config", f"python:{GUNICORN_CONFIG}", "--bind", address, "--workers", str(workers)],
    ]


def runserver_command(address: str) -> list[str]:
    """Django's development server; ``--insecure`` serves static files without DEBUG."""
    return [sys.executable, "manage.py", "runserver", address, "--noreload", "--insecure"]


def worker_command(*, concurrency: int = WORKER_CONCURRENCY, quiet: bool = False) -> list[str]:
    """``quiet``: without Celery's banner (``make run`` prints its own)."""
    return [
        *_celery(quiet),
        *["worker", "--pool", "threads", "--concurrency", str(concurrency)],
        *["--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
    ]


def beat_command(schedule: Path, *, quiet: bool = False) -> list[str]:
    return [*_celery(quiet), "beat", "--loglevel", "INFO", "--schedule", str(schedule)]


def _celery(quiet: bool) -> list[str]:
    # --quiet is an option of celery itself: before the app and the subcommand.
    return [sys.executable, "-m", "celery", "--quiet", "-A", "guestgate"] if quiet else CELERY


def spawn(
    argv: list[str], *, env: Mapping[str, str] | None = None, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in GuestGate's folder, in a process group of its own (Ctrl-C reaches the
    parent only, which stops its children in order; ``stop`` can kill the whole group)."""
    return subprocess.Popen(
        argv,
        cwd=settings.BASE_DIR,
        env=dict(env) if env is not None else None,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
    )


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log_path: Path | None = None,
    timeout: float = 30,
) -> None:
    """Poll ``ready`` until it is true; ProcessFailed if ``process`` exits or time runs out.
    On any failure the process is stopped: the caller has nothing to clean up."""
    where = f"; see {log_path}" if log_path is not None else ""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise ProcessFailed(f"{what} exited with status {process.returncode}{where}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{what} was not ready after {timeout:.0f} s{where}")
            time.sleep(0.1)
    except BaseException:  # not ready, a failing check, Ctrl-C: leave nothing running
        stop(process)
        raise


def appservice_answering(appservice_url: str, hs_token: str | None = None) -> bool:
    """Whether GuestGate's web server answers at ``appservice_url``: the appservice ping with
    the main homeserver's token (``MAIN_HS_TOKEN`` unless given), which GuestGate answers
    200 and nothing else holding the port would. With the token, so that the web server's
    log shows no refused request at each start."""
    token = hs_token if hs_token is not None else settings.MAIN_HS_TOKEN
    try:
        answer = httpx.post(
            f"{appservice_url}/_matrix/app/v1/ping",
            headers={"Authorization": f"Bearer {token}"},
            json={},
        )
    except httpx.TransportError:
        return False
    return answer.status_code == 200


def worker_ready(log_path: Path, *, since: bytes = b"") -> bool:
    """Whether the worker logging to ``log_path`` said it is ready (after ``since``, a marker
    written before it started, when the log holds earlier starts)."""
    log = log_path.read_bytes()
    return b"ready." in (log.rsplit(since, 1)[-1] if since else log)


def queue_emptied(env: Mapping[str, str]) -> None:
    """Drop the messages an earlier, interrupted run left: they name rows of another database."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        shutil.rmtree(settings.CELERY_QUEUE_DIR, ignore_errors=True)
        settings.CELERY_QUEUE_DIR.joinpath("processed").mkdir(parents=True, exist_ok=True)
    else:
        subprocess.run(
            [*CELERY, "purge", "-f"],
            env=dict(env),
            check=True,
            capture_output=True,
            cwd=settings.BASE_DIR,
        )


def stop(*processes: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM each (Celery then shuts its pool down warmly), SIGKILL the group of any still
    running after ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
