"""The processes a benchmark runs against: the local homeserver pair, GuestGate's web server
and a real Celery worker (devtools/processes.py, as for the tests), on the benchmark's own ports
and state.

Everything started here is stopped again by the context manager, also on Ctrl-C or an error;
the homeserver pair only if this run started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from bench.proxy import ForwardingProxy
from devtools import processes
from devtools.localpair import LocalPair, configured_pair
from devtools.localpair.process import LocalPairError, down, ensure_up

#: How long to wait for the pair's ports when a run that just ended still holds them.
PAIR_PORTS_WAIT_SECONDS = 90.0
#: Threads of the Celery worker (``--pool threads``); floors that model the worker use as many.
WORKER_CONCURRENCY = processes.WORKER_CONCURRENCY
#: GuestGate's web server: gunicorn with the deployed settings, as many workers as compose runs.
WEB_WORKERS = 2


class BenchError(RuntimeError):
    """The benchmark could not run; the message says what to look at."""


@dataclass(frozen=True)
class Stack:
    pair: LocalPair
    web_url: str  # GuestGate's web server: guests browse here, main pushes here
    proxy_url: str  # the reverse proxy in front of it, which GuestGate trusts (bench/proxy.py)
    log_dir: Path
    pair_started: bool
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    def exited(self) -> str | None:
        """Which of GuestGate's processes has exited (a step then never ends), if any."""
        for name, process in (("web server", self.web), ("Celery worker", self.worker)):
            if process.poll() is not None:
                log = self.log_dir / ("web.log" if process is self.web else "worker.log")
                return f"GuestGate's {name} exited with {process.returncode}; see {log}"
        return None


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, every: float) -> float:
    """Call ``check`` every ``every`` seconds until it is true; the perf_counter() it was."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def process_env() -> dict[str, str]:
    """GuestGate's processes: the benchmark's settings, ports, state directory and database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GUESTGATE_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
    }


@contextmanager
def running_stack() -> Iterator[Stack]:
    log_dir = settings.VAR_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pair = configured_pair()
    with ExitStack() as cleanup:
        started = _pair_up(pair)
        if started:
            cleanup.callback(down, pair)
        web = _start_web(pair, log_dir / "web.log")
        cleanup.callback(processes.stop, web)
        worker = _start_worker(log_dir / "worker.log")
        cleanup.callback(processes.stop, worker)
        proxy = ForwardingProxy(pair.appservice_url).start()
        cleanup.callback(proxy.stop)
        yield Stack(
            pair=pair,
            web_url=pair.appservice_url,
            proxy_url=proxy.url,
            log_dir=log_dir,
            pair_started=started,
            web=web,
            worker=worker,
        )


def _pair_up(pair: LocalPair) -> bool:
    """``ensure_up``, waiting a while if the ports are not free yet: right after a run has
    stopped its pair, the kernel can refuse the ports for up to a minute (TIME_WAIT)."""
    deadline = time.monotonic() + PAIR_PORTS_WAIT_SECONDS
    while True:
        try:
            _, started = ensure_up(pair)
            return started
        except LocalPairError as error:
            if time.monotonic() > deadline:
                raise
            print(f"  the homeserver pair cannot start yet ({error}); retrying", file=sys.stderr)
            time.sleep(10)


def _start_web(pair: LocalPair, log_path: Path) -> subprocess.Popen[bytes]:
    address = pair.appservice_url.removeprefix("http://")
    host, port = address.rsplit(":", 1)
    if _port_taken(host, int(port)):
        # A readiness probe would pass against whatever holds it (MATRIX-LAB P10).
        raise BenchError(f"{address} is already in use; set GUESTGATE_LOCAL_APPSERVICE_PORT")
    with log_path.open("wb") as log:
        # As deployed (Dockerfile, docker-compose.yml).
        command = processes.gunicorn_command(address, workers=WEB_WORKERS)
        web = processes.spawn(command, env=process_env(), log=log)
    _ready_or_bench_error(
        web,
        lambda: processes.appservice_answering(pair.appservice_url),
        "GuestGate's web server",
        log_path,
    )
    return web


def _start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    processes.queue_emptied(process_env())
    with log_path.open("wb") as log:
        command = processes.worker_command(concurrency=WORKER_CONCURRENCY)
        worker = processes.spawn(command, env=process_env(), log=log)
    _ready_or_bench_error(
        worker, lambda: processes.worker_ready(log_path), "the Celery worker", log_path
    )
    return worker


def _ready_or_bench_error(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log_path: Path
) -> None:
    try:
        processes.wait_until_ready(process, ready, what=what, log_path=log_path)
    except processes.ProcessFailed as error:
        raise BenchError(str(error)) from None


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
