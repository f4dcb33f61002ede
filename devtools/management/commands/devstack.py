"""``manage.py devstack``: everything GuestGate needs on one machine, for ``make run``.

Migrates, brings up the local homeserver pair, starts a Celery worker, Celery beat and the web
server as child processes, prints where to click, restarts a worker or beat that exits (as
compose does), and on Ctrl-C stops exactly what it started.

The processes' logs go to files under ``var/log/`` (the homeservers' as links to their own
files), so that the demo's link, its QR code and the moderator's login stay the last thing on
screen; ``--verbose`` (``make run VERBOSE=1``) shows the web server's, the worker's and beat's
logs live instead.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from devtools import processes
from devtools.localpair import LocalPair, configured_pair
from devtools.localpair.config import server_files
from devtools.localpair.process import down, ensure_up


class Command(BaseCommand):
    help = "Run GuestGate with the local homeserver pair, a Celery worker and beat."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="Show the web server's, the worker's and beat's logs here as they come "
            "(otherwise they go to files under var/log/).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pair = configured_pair()
        # The web server listens where the pair's main homeserver pushes (and links point:
        # PUBLIC_URL), so it moves with GUESTGATE_LOCAL_APPSERVICE_PORT, never on its own.
        port = int(pair.appservice_url.rsplit(":", 1)[1])
        _refuse_if_taken(port)
        _stop_on(_STOP_SIGNALS)
        logs = None if options["verbose"] else ProcessLogs(settings.VAR_DIR / "log")
        call_command("migrate", interactive=False, verbosity=0)
        self._say("Starting the local homeserver pair…\n")
        _, started_pair = ensure_up(pair)
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            demo = io.StringIO()
            call_command("seed_demo", stdout=demo)
            commands = self._commands(port)
            if logs is not None:
                logs.link_homeservers(pair)
            for name, argv in commands.items():
                # Own process group: Ctrl-C reaches devstack, which stops them in order.
                children[name] = spawn_logged(argv, name, logs, fresh=True)
            _wait_until_answering(pair.appservice_url, children["web server"], logs)
            self._announce(pair, logs)
            self._say(demo.getvalue() + "\nPress Ctrl-C to stop everything.\n")
            Supervisor(children, commands, say=self._say, logs=logs).run()
        except KeyboardInterrupt:
            self._say("\nStopping…\n")
        finally:
            # Stopping is bounded (processes.stop and down kill what does not end in time): a
            # second Ctrl-C must not cut it short and leave the rest running.
            for signum in _STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            processes.stop(*children.values())
            if started_pair:
                down(pair)
            self._say("Stopped everything devstack started.\n")

    def _commands(self, port: int) -> dict[str, list[str]]:
        return {
            "celery worker": processes.worker_command(quiet=True),
            "celery beat": processes.beat_command(settings.CELERY_BEAT_SCHEDULE_FILE, quiet=True),
            "web server": processes.runserver_command(f"127.0.0.1:{port}"),
        }

    def _say(self, text: str) -> None:
        # Flushed: piped (`make run | tee run.log`), stdout would hold it back.
        self.stdout.write(text, ending="")
        self.stdout.flush()

    def _announce(self, pair: LocalPair, logs: ProcessLogs | None) -> None:
        where = (
            "Logs: shown above as they come (the homeservers' are in their folders under "
            f"{pair.directory}).\n"
            if logs is None
            else f"Logs: {logs.directory}/ ({', '.join(logs.names())}); "
            "`make run VERBOSE=1` shows them here instead.\n"
        )
        self._say(
            self.style.SUCCESS(f"\nGuestGate is running: open {pair.appservice_url}/\n")
            + f"  guest homeserver  {pair.guest.client_url}\n"
            + f"  main homeserver   {pair.main.client_url}\n"
            + call_mode_line(settings.CALL_MODE, frontend_built=front_end_built())
            + where
            + "\n"
        )


def front_end_built() -> bool:
    """Whether Element Call's embedded build and the lobby's call host are in build/."""
    return (settings.CALL_BUILD_DIR / "index.html").exists()


def call_mode_line(mode: str, *, frontend_built: bool) -> str:
    """The line of ``make run`` that says how a let-in guest gets into the call."""
    if mode == "embedded":
        return "Call: Element Call embedded in the lobby (GUESTGATE_CALL_MODE=embedded).\n"
    if frontend_built:
        how = "unset GUESTGATE_CALL_MODE (or set it to embedded)"
    else:
        how = "install Node.js 20 and npm, then `make frontend`"
    return (
        'Call: link mode, the lobby offers an "Open the call" link '
        f"(GUESTGATE_CALL_MODE=link); for Element Call embedded in the lobby, {how}.\n"
    )


class ProcessLogs:
    """Where devstack's processes write: one file per process under ``directory``, started
    afresh by each ``make run`` and appended to by a restart, and links to the homeservers'
    own log files, so that every log of the stack is in one folder."""

    HOMESERVER_LOGS = ("guest-homeserver.log", "main-homeserver.log")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    #: devstack's names of its processes, and their files' names.
    FILES = {"web server": "web.log", "celery worker": "worker.log", "celery beat": "beat.log"}

    def path(self, process: str) -> Path:
        return self.directory / self.FILES.get(process, f"{process.replace(' ', '-')}.log")

    def names(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("*.log"))

    def link_homeservers(self, pair: LocalPair) -> None:
        for name, server in zip(self.HOMESERVER_LOGS, (pair.guest, pair.main), strict=True):
            link = self.directory / name
            link.unlink(missing_ok=True)
            link.symlink_to(server_files(server).log)


#: Django's development server warns at every start that it is one; make run is where it is
#: meant to be used, so the warning only hides what is worth reading (Django 5.2's switch).
_QUIET_DEV_SERVER = {"DJANGO_RUNSERVER_HIDE_WARNING": "true"}


def spawn_logged(
    argv: list[str], name: str, logs: ProcessLogs | None, *, fresh: bool
) -> subprocess.Popen[bytes]:
    """Start ``name``'s process (in its own process group), writing to its log file
    (``fresh``: emptied first), or to devstack's own output when ``logs`` is None
    (--verbose)."""
    env = {**os.environ, **_QUIET_DEV_SERVER}
    if logs is None:
        return processes.spawn(argv, env=env)
    with logs.path(name).open("wb" if fresh else "ab") as log:
        return processes.spawn(argv, env=env, log=log)


class Supervisor:
    """Watches devstack's children as compose's ``restart: unless-stopped`` does: a Celery
    worker or beat that exits (a broker restart, a crash) is started again, and said so; one
    that keeps exiting is left stopped, said so, while the web server's pages say it too; the
    web server exiting ends devstack with the reason."""

    RESTARTABLE = ("celery worker", "celery beat")
    #: This many exits of one child within WINDOW_SECONDS: it will not stay up, so stop.
    MAX_RESTARTS = 5
    WINDOW_SECONDS = 60.0

    def __init__(
        self,
        children: dict[str, subprocess.Popen[bytes]],
        commands: dict[str, list[str]],
        *,
        say: Callable[[str], None],
        poll_seconds: float = 0.5,
        logs: ProcessLogs | None = None,
    ) -> None:
        self.children = children  # the caller's: it stops whatever runs at the end
        self.commands = commands
        self.say = say
        self.poll_seconds = poll_seconds
        self.logs = logs
        self.restarts: dict[str, deque[float]] = {name: deque() for name in children}
        self.given_up: set[str] = set()

    def run(self) -> None:
        while True:
            self.check()
            time.sleep(self.poll_seconds)

    def check(self) -> None:
        """Restart each child that exited; CommandError if the web server did."""
        for name, child in list(self.children.items()):
            if child.poll() is None or name in self.given_up:
                continue
            exited = f"the {name} exited with status {child.returncode}"
            if name not in self.RESTARTABLE:
                raise CommandError(exited)
            now = time.monotonic()
            recent = self.restarts[name]
            recent.append(now)
            while recent and recent[0] < now - self.WINDOW_SECONDS:
                recent.popleft()
            if len(recent) > self.MAX_RESTARTS:
                # The web server stays up: its pages say that no worker runs (ops/workers.py).
                self.given_up.add(name)
                self.say(
                    f"\n{exited}, {len(recent)} times within {self.WINDOW_SECONDS:.0f} s; "
                    f"not starting it again (its output is {self._where(name)}). GuestGate's "
                    "pages say so (/healthz); stop with Ctrl-C, fix it and run make run again.\n"
                )
                continue
            self.say(f"\n{exited}; starting it again.\n")
            self.children[name] = spawn_logged(self.commands[name], name, self.logs, fresh=False)

    def _where(self, name: str) -> str:
        return "above" if self.logs is None else f"in {self.logs.path(name)}"


#: Ctrl-C; `timeout`, systemd or a closing terminal (SIGTERM, SIGHUP): all stop cleanly.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on(signums: tuple[signal.Signals, ...]) -> None:
    """Have ``signums`` raise KeyboardInterrupt, whatever this process inherited: started from
    a script or CI, SIGINT comes ignored (Python then leaves it so) or blocked. Set before any
    child starts, so that the children get the default dispositions and an empty mask too."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)
    for signum in signums:
        signal.signal(signum, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _refuse_if_taken(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CommandError(
                f"Port {port} is already in use (another `make run`?). Stop it, or run on "
                f"another port: `GUESTGATE_LOCAL_APPSERVICE_PORT={port + 1} make run`."
            ) from None


def _wait_until_answering(
    url: str, server: subprocess.Popen[bytes], logs: ProcessLogs | None
) -> None:
    try:
        processes.wait_until_ready(
            server,
            lambda: processes.appservice_answering(url),
            what="the web server",
            log_path=logs.path("web server") if logs is not None else None,
        )
    except processes.ProcessFailed as error:
        raise CommandError(f"{error} (at {url})") from None
