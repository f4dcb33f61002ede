"""What ``make run`` (devstack) writes where: the processes' logs in files under ``var/log/``
(or on screen with ``--verbose``), and none of the start-up lines that look like errors but
are not (Celery's warning about root, kombu's missing hostname with the embedded broker).
Real child processes, no fixed ports."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from devtools import processes
from devtools.localpair import configured_pair
from devtools.localpair.config import server_files
from devtools.management.commands.devstack import (
    ProcessLogs,
    Supervisor,
    call_mode_line,
    spawn_logged,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def finished(process: subprocess.Popen[bytes]) -> int:
    return process.wait(timeout=30)


def test_each_process_writes_to_its_own_file_and_a_new_run_starts_it_afresh(
    tmp_path: Path,
) -> None:
    logs = ProcessLogs(tmp_path / "log")
    finished(spawn_logged(python("print('first run')"), "web server", logs, fresh=True))

    finished(spawn_logged(python("print('second run')"), "web server", logs, fresh=True))

    assert logs.path("web server") == tmp_path / "log" / "web.log"
    assert logs.path("web server").read_text() == "second run\n"


def test_a_restarted_worker_writes_on_in_its_log_and_giving_up_names_the_log(
    tmp_path: Path,
) -> None:
    logs = ProcessLogs(tmp_path / "log")
    said: list[str] = []
    commands = {"celery worker": python("print('worker ran'); raise SystemExit(2)")}
    children = {
        "celery worker": spawn_logged(commands["celery worker"], "celery worker", logs, fresh=True)
    }
    supervisor = Supervisor(children, commands, say=said.append, logs=logs)
    try:
        for _ in range(Supervisor.MAX_RESTARTS + 1):
            finished(children["celery worker"])
            supervisor.check()
    finally:
        processes.stop(*children.values())

    worker_log = tmp_path / "log" / "worker.log"
    assert worker_log.read_text() == "worker ran\n" * (Supervisor.MAX_RESTARTS + 1)
    assert f"its output is in {worker_log}" in said[-1]


def test_the_homeservers_logs_are_linked_into_the_same_folder(tmp_path: Path) -> None:
    pair = configured_pair()
    logs = ProcessLogs(tmp_path / "log")

    logs.link_homeservers(pair)
    logs.link_homeservers(pair)  # the next make run: the links are made again

    assert (tmp_path / "log" / "guest-homeserver.log").readlink() == server_files(pair.guest).log
    assert (tmp_path / "log" / "main-homeserver.log").readlink() == server_files(pair.main).log
    assert logs.names() == ["guest-homeserver.log", "main-homeserver.log"]


def test_verbose_shows_the_processes_output_on_devstacks_own(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    finished(spawn_logged(python("print('live')"), "celery beat", None, fresh=True))

    assert "live" in capfd.readouterr().out
    assert not list(tmp_path.iterdir())


def test_the_web_server_does_not_warn_that_it_is_a_development_server(tmp_path: Path) -> None:
    logs = ProcessLogs(tmp_path / "log")
    code = "import os; print(os.environ.get('DJANGO_RUNSERVER_HIDE_WARNING'))"

    finished(spawn_logged(python(code), "web server", logs, fresh=True))

    assert logs.path("web server").read_text() == "true\n"


def test_the_embedded_broker_does_not_say_a_hostname_is_missing(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    folders = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with (
        caplog.at_level(logging.WARNING, logger="kombu.connection"),
        Connection("filesystem://", transport_options=folders) as connection,
    ):
        info = connection.info()

    assert info["transport"] == "filesystem"
    assert "devtools.embedded_broker" in type(connection.transport).__module__
    assert not [r for r in caplog.records if "hostname" in r.getMessage()]


ROOT_CHECK = """
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "{settings}"
from celery.platforms import check_privileges
from guestgate.celery import app
os.getuid = os.geteuid = lambda: 0  # as on our machines, whoever runs the test
check_privileges(app.conf.accept_content)  # the worker's check, after it read the settings
"""


@pytest.mark.parametrize(
    ("settings_module", "warned"),
    [("devtools.settings", False), ("guestgate.settings", True)],
)
def test_celerys_warning_about_root_is_silenced_for_the_dev_stack_only(
    settings_module: str, warned: bool
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        # guestgate.settings alone needs its homeservers; the dev pair's are as good as any.
        **configured_pair().environment(),
        "GUESTGATE_SECRET_KEY": "x" * 50,
    }
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", ROOT_CHECK.format(settings=settings_module)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert ("superuser privileges" in run.stderr) is warned, run.stderr


@pytest.mark.parametrize(
    ("mode", "built", "said"),
    [
        (
            "embedded",
            True,
            "Call: Element Call embedded in the lobby (GUESTGATE_CALL_MODE=embedded)",
        ),
        ("link", False, "embedded in the lobby, install Node.js 20 and npm, then `make frontend`"),
        ("link", True, "embedded in the lobby, unset GUESTGATE_CALL_MODE (or set it to embedded)"),
    ],
)
def test_make_run_says_in_one_line_which_call_mode_is_in_use_and_how_to_embed_it(
    mode: str, built: bool, said: str
) -> None:
    line = call_mode_line(mode, frontend_built=built)

    assert said in line
    assert line.count("\n") == 1 and line.endswith("\n")
    assert (f"GUESTGATE_CALL_MODE={mode})") in line
