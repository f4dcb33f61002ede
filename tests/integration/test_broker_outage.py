"""Redis, the broker, restarted under a real Celery worker that holds unacknowledged tasks
(issue 12, item 7). A private redis-server (append-only file, as deployed), never the
machine's."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from devtools import processes
from guestgate.celery import app as celery_app
from rooms.provisioning import provision_join_request
from tests.waiting import wait_for

#: The tasks' countdown, and the worker's visibility timeout: a task held unacknowledged that
#: long goes back to the queue (Redis restarts make the worker drop what it held).
COUNTDOWN_SECONDS = 3
VISIBILITY_TIMEOUT_SECONDS = 6


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            # As deployed (docker-compose.yml): queued tasks survive a restart.
            [
                *["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"],
                *["--save", "", "--appendonly", "yes", "--dir", str(self.directory)],
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, what="the private redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis writes its append-only file and exits
            self.process.wait(timeout=15)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def redis_worker(
    redis_broker: PrivateRedis, process_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A worker as deployed (threads), on the private Redis and the test database."""
    env = {
        **process_env,
        "CELERY_BROKER_URL": redis_broker.url,
        "GUESTGATE_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = processes.spawn(processes.worker_command(), env=env, log=log)
    processes.wait_until_ready(
        worker, lambda: processes.worker_ready(log_path), what="the worker", log_path=log_path
    )
    yield worker, log_path
    processes.stop(worker)


def tasks_in_log(log_path: Path, word: str, task_ids: list[str]) -> list[str]:
    log = log_path.read_text(errors="replace")
    return [task_id for task_id in task_ids if f"[{task_id}] {word}" in log]


def test_a_redis_restart_under_load_loses_no_task_and_keeps_the_worker(
    redis_broker: PrivateRedis,
    redis_worker: tuple[subprocess.Popen[bytes], Path],
) -> None:
    worker, log_path = redis_worker
    task_ids = [uuid.uuid4().hex for _ in range(20)]
    with celery_app.connection_for_write(redis_broker.url) as connection:
        for number, task_id in enumerate(task_ids):
            # Requests that no longer exist: each task loads nothing and returns quietly.
            celery_app.send_task(
                provision_join_request.name,
                args=(10**9 + number,),
                countdown=COUNTDOWN_SECONDS,
                task_id=task_id,
                connection=connection,
            )
    # The worker holds them all, unacknowledged, waiting out their countdown.
    wait_for(
        lambda: len(tasks_in_log(log_path, "received", task_ids)) == len(task_ids),
        what="the worker to hold every task",
    )

    redis_broker.stop()
    wait_for(
        lambda: "Connection to broker lost" in log_path.read_text(errors="replace"),
        what="the worker to notice",
    )
    redis_broker.start()

    def all_ran() -> bool:
        if worker.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise AssertionError(f"the worker died (status {worker.returncode}):\n{tail}")
        return len(tasks_in_log(log_path, "succeeded", task_ids)) == len(task_ids)

    wait_for(all_ran, what="every task to run after the restart", timeout=90)
    # …and it still takes new work.
    after = uuid.uuid4().hex
    with celery_app.connection_for_write(redis_broker.url) as connection:
        celery_app.send_task(
            provision_join_request.name, args=(10**9,), task_id=after, connection=connection
        )
    wait_for(lambda: tasks_in_log(log_path, "succeeded", [after]), what="a task sent afterwards")
    assert redis_broker.url != settings.CELERY_BROKER_URL  # not the suite's own broker
