"""Starting and stopping GuestGate's own processes (devtools/processes.py), with real child
processes: the same code runs them for `make run`, the tests and the bench."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from devtools import processes
from devtools.management.commands.devstack import Supervisor


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_worker_is_ready_when_its_log_says_so_after_the_marker(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(b"--- start 1 ---\ncelery@vm ready.\n--- start 2 ---\nstarting\n")

    assert processes.worker_ready(log)  # no marker: the whole log
    assert not processes.worker_ready(log, since=b"--- start 2 ---")  # the earlier start's line

    with log.open("ab") as more:
        more.write(b"celery@vm ready.\n")
    assert processes.worker_ready(log, since=b"--- start 2 ---")


def test_a_process_that_exits_before_it_is_ready_is_reported_with_its_log(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = processes.spawn(python("import sys; sys.exit(3)"), log=log)

    with pytest.raises(processes.ProcessFailed, match=r"exited with status 3; see .*web\.log"):
        processes.wait_until_ready(process, lambda: False, what="the web server", log_path=log_path)


def test_a_process_never_ready_is_stopped_after_the_timeout() -> None:
    process = processes.spawn(python("import time; time.sleep(60)"))

    with pytest.raises(processes.ProcessFailed, match="not ready after"):
        processes.wait_until_ready(process, lambda: False, what="the worker", timeout=0.3)

    assert process.poll() is not None


def test_a_readiness_check_that_fails_stops_the_process() -> None:
    process = processes.spawn(python("import time; time.sleep(60)"))

    def broken_check() -> bool:
        raise ValueError("the log is unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        processes.wait_until_ready(process, broken_check, what="the worker")

    assert process.poll() is not None


def test_stop_kills_the_whole_group_of_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    # A parent that ignores SIGTERM and a child of its own (like gunicorn's workers).
    child_pid = tmp_path / "child.pid"
    code = (
        "import signal, subprocess, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(child_pid)!r}).write_text(str(c.pid))\n"
        "time.sleep(60)\n"
    )
    process = processes.spawn(python(code))
    processes.wait_until_ready(process, child_pid.exists, what="the parent", timeout=10)

    processes.stop(process, timeout=0.5)

    assert process.returncode is not None
    assert _gone(int(child_pid.read_text()))


def test_quiet_celery_commands_put_the_option_before_the_app() -> None:
    worker = processes.worker_command(quiet=True, concurrency=3)
    beat = processes.beat_command(Path("/tmp/schedule"), quiet=True)

    assert worker[:6] == [sys.executable, "-m", "celery", "--quiet", "-A", "guestgate"]
    assert worker[6:10] == ["worker", "--pool", "threads", "--concurrency"]
    assert worker[10] == "3"
    assert beat[3:7] == ["--quiet", "-A", "guestgate", "beat"]
    assert "--quiet" not in processes.worker_command()


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie left for a reaper (its parent was killed too)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)  # SIGKILL is delivered asynchronously
    return False


# -- devstack's supervision (make run): a dead worker or beat is started again ---------------


def test_devstack_starts_a_worker_that_exited_again_and_says_so() -> None:
    said: list[str] = []
    commands = {
        "celery worker": python("import time; time.sleep(60)"),
        "web server": python("import time; time.sleep(60)"),
    }
    dead = processes.spawn(python("raise SystemExit(1)"))
    dead.wait()
    children = {"celery worker": dead, "web server": processes.spawn(commands["web server"])}
    try:
        Supervisor(children, commands, say=said.append).check()

        assert children["celery worker"] is not dead
        assert children["celery worker"].poll() is None  # running again
        assert said == ["\nthe celery worker exited with status 1; starting it again.\n"]
    finally:
        processes.stop(*children.values())


def test_devstack_gives_up_on_a_worker_that_keeps_exiting_and_keeps_the_pages_up() -> None:
    """The web server stays, so that its pages (``/healthz``, a guest's lobby) say that no
    worker runs (ops/workers.py), instead of make run ending with everything."""
    said: list[str] = []
    commands = {"celery beat": python("raise SystemExit(2)")}
    children = {"celery beat": processes.spawn(commands["celery beat"])}
    supervisor = Supervisor(children, commands, say=said.append)
    try:
        for _ in range(Supervisor.MAX_RESTARTS + 1):
            children["celery beat"].wait()
            supervisor.check()
        last = children["celery beat"]
        supervisor.check()  # and again later: nothing more is started

        assert children["celery beat"] is last
        assert len(said) == Supervisor.MAX_RESTARTS + 1
        assert "the celery beat exited with status 2, 6 times within 60 s" in said[-1]
        assert "not starting it again" in said[-1]
        assert "/healthz" in said[-1]
    finally:
        processes.stop(*children.values())


def test_devstack_ends_when_the_web_server_exits() -> None:
    web = processes.spawn(python("raise SystemExit(3)"))
    web.wait()
    with pytest.raises(CommandError, match="the web server exited with status 3"):
        Supervisor({"web server": web}, {"web server": []}, say=lambda text: None).check()
