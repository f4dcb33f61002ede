"""``make run``, as a newcomer runs it: one command on embedded defaults (SQLite, the embedded
Celery broker, the local homeserver pair) that prints where to click, a demo in which a guest
is let in from the dashboard and another from a Matrix client, and Ctrl-C stopping it all.

It runs on its own ports and state folder (GUESTGATE_LOCAL_APPSERVICE_PORT,
GUESTGATE_LOCAL_PORT_BASE, GUESTGATE_VAR_DIR), with none of the test run's database, broker
or homeserver settings in its environment. Moving the port also checks that the web server,
main's pushes and the printed links follow GUESTGATE_LOCAL_APPSERVICE_PORT together.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from devtools.guestbrowser import GuestBrowser, ModeratorBrowser
from matrix import CALL_MEMBER_EVENT, MatrixClient
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.waiting import wait_for

pytestmark = pytest.mark.homeservers

LIVE = 60_000  # ms: Element Call loads and negotiates with the lobby

# Below the kernel's ephemeral ports (32768+): a client connection of the test run could hold
# one of those as its own end (TIME_WAIT), and the pair would refuse to start.
PORT_BASE = 24000  # the pair: 24081/24082 (clients), 24481/24482 (federation)
WEB_PORT = 24499
#: What a fresh shell has; everything that configures GuestGate is left out.
KEPT_ENVIRONMENT = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR")


@dataclass
class Demo:
    url: str
    invite_token: str
    room_id: str
    moderator_id: str
    moderator_password: str
    main_url: str


#: How a script or a CI job starts a command in the background: with Ctrl-C ignored (a
#: non-interactive shell sets SIGINT to "ignore" for `command &`, and exec keeps that).
WITH_CTRL_C_IGNORED = ["bash", "-c", 'trap "" INT; exec "$@"', "bash"]


class MakeRun:
    """``make run`` in a process group of its own, as a terminal runs it; its output kept."""

    def __init__(self, var_dir: Path, *, ctrl_c_ignored: bool = False) -> None:
        self.var_dir = var_dir
        env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
        env |= {
            "GUESTGATE_VAR_DIR": str(var_dir),
            "GUESTGATE_LOCAL_PORT_BASE": str(PORT_BASE),
            "GUESTGATE_LOCAL_APPSERVICE_PORT": str(WEB_PORT),
        }
        self.process = subprocess.Popen(
            [
                *(WITH_CTRL_C_IGNORED if ctrl_c_ignored else []),
                "make",
                "--no-print-directory",
                "run",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until_running(self) -> Demo:
        def announced() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited ({self.process.returncode}):\n{self.output}")
            return "GuestGate is running" in self.output

        wait_for(announced, what="make run to say where to click", timeout=240)
        # The line that says how a guest gets into the call is printed before the demo.
        wait_for(lambda: "Press Ctrl-C" in self.output, what="the demo's lines")
        out = self.output
        url = _found(r"GuestGate is running: open (http://\S+?)/?$", out)
        return Demo(
            url=url,
            invite_token=_found(re.escape(url) + r"/j/(\w+)", out),
            room_id=_found(r"Demo call room: .*\((![^)]+)\)", out),
            moderator_id=_found(r"Matrix id (@\S+)", out),
            moderator_password=_found(r"password +(\S+)", out),
            main_url=_found(r"main homeserver +(http://\S+)", out),
        )

    def processes_left(self) -> list[str]:
        """Command lines of the processes still running with this run's state folder."""
        return list(self._left().values())

    def _left(self) -> dict[int, str]:
        marker = f"GUESTGATE_VAR_DIR={self.var_dir}".encode()
        left = {}
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                    state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                        left[int(proc.name)] = command
            except OSError:
                continue  # ended meanwhile, or not ours to read
        return left

    def ctrl_c(self) -> int:
        """SIGINT to the foreground process group, as the terminal sends on Ctrl-C."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=90)

    def stop(self) -> None:
        """Leave nothing behind, whatever happened to the test (even a Ctrl-C that went
        unheard): SIGTERM to the group, on which devstack stops what it started; then SIGKILL
        to the group and to every process of this run still there (devstack's children have
        process groups of their own)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pid in self._left():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"make run did not print {pattern!r}:\n{text}"
    return match.group(1)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _make_run(var_dir: Path, *, ctrl_c_ignored: bool = False) -> Iterator[MakeRun]:
    taken = [p for p in (WEB_PORT, PORT_BASE + 81, PORT_BASE + 82) if _listening(p)]
    assert not taken, f"ports {taken} are in use; this test needs them free"
    run = MakeRun(var_dir, ctrl_c_ignored=ctrl_c_ignored)
    yield run
    run.stop()


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    """``make run`` as a newcomer starts it in a terminal."""
    yield from _make_run(tmp_path / "var")


@pytest.fixture
def make_run_from_a_script(tmp_path: Path) -> Iterator[MakeRun]:
    """``make run`` as a script or a CI job starts it: SIGINT inherited as ignored."""
    yield from _make_run(tmp_path / "var", ctrl_c_ignored=True)


def stopped_everything(run: MakeRun) -> None:
    assert "Stopped everything devstack started." in run.output, run.output
    still_listening = [p for p in (WEB_PORT, PORT_BASE + 81, PORT_BASE + 82) if _listening(p)]
    assert not still_listening, f"still listening after Ctrl-C: {still_listening}"
    assert not run.processes_left(), f"left running: {run.processes_left()}"


def test_make_run_shows_a_demo_a_guest_can_be_let_into_then_stops_everything(
    make_run: MakeRun,
) -> None:
    demo = make_run.wait_until_running()
    assert demo.url == f"http://127.0.0.1:{WEB_PORT}"

    # A guest through the printed link, let in from the dashboard with the printed login.
    dora = GuestBrowser(demo.url)
    assert dora.ask_to_join(demo.invite_token, "Dora").status_code == 302
    dora.wait_for("waiting", timeout=60)
    moderator = ModeratorBrowser(demo.url)
    assert moderator.sign_in(demo.moderator_id, demo.moderator_password).status_code == 302
    room_pk = _found(r"/moderator/rooms/(\d+)", moderator.http.get("/moderator/").text)
    queue = moderator.wait_for_queue(int(room_pk), lambda state: state["waiting"] == 1)
    approve = _found(r'action="(/moderator/requests/\d+/approve)"', queue["html"])
    assert moderator.post(approve).status_code == 302
    assert dora.wait_for("joined", timeout=60)["session"]["roomId"] == demo.room_id

    # Another, let in by the same moderator from a Matrix client of their own.
    erin = GuestBrowser(demo.url)
    erin.ask_to_join(demo.invite_token, "Erin")
    erin.wait_for("waiting", timeout=60)
    with MatrixClient(base_url=demo.main_url, access_token=None) as anonymous:
        session = anonymous.password_login(demo.moderator_id, demo.moderator_password)
    with MatrixClient(base_url=demo.main_url, access_token=session.access_token) as element:
        # The lobby says "waiting" when the knock call returned; main shows it a moment
        # later (MATRIX-LAB P5).
        knocking = wait_for(
            lambda: element.members(demo.room_id, membership="knock"),
            what="Erin's knock on main",
        )
        assert [m.displayname for m in knocking] == ["Erin (Guest)"]
        element.invite(demo.room_id, knocking[0].user_id)
    erin.wait_for("joined", timeout=60)
    for browser in (dora, erin, moderator):
        browser.close()

    # The demo stays the last thing on screen; the processes' logs are in files, with no
    # start-up line that looks like an error and is not one.
    assert make_run.output.rstrip().endswith("Press Ctrl-C to stop everything."), make_run.output
    logs = make_run.var_dir / "log"
    for name in ("web.log", "worker.log", "beat.log"):
        log = (logs / name).read_text()
        assert log, f"{name} is empty"
        for false_alarm in (
            "superuser privileges",
            "No hostname was supplied",
            "Unauthorized",
            "This is a development server",
        ):
            assert false_alarm not in log, f"{name}: {false_alarm!r}"
    assert "celery@" not in make_run.output  # the worker's log is not on screen

    make_run.ctrl_c()  # make itself then ends "Interrupt", as in a terminal

    stopped_everything(make_run)


def let_in_from_the_dashboard(demo: Demo) -> None:
    """The demo's moderator, signed in with the printed login, lets the one waiting guest in."""
    moderator = ModeratorBrowser(demo.url)
    assert moderator.sign_in(demo.moderator_id, demo.moderator_password).status_code == 302
    room_pk = _found(r"/moderator/rooms/(\d+)", moderator.http.get("/moderator/").text)
    queue = moderator.wait_for_queue(int(room_pk), lambda state: state["waiting"] == 1, timeout=60)
    approve = _found(r'action="(/moderator/requests/\d+/approve)"', queue["html"])
    assert moderator.post(approve).status_code == 302
    moderator.close()


@contextlib.contextmanager
def signed_in_on_main(demo: Demo) -> Iterator[MatrixClient]:
    """The demo's moderator in a Matrix client of their own on main."""
    with MatrixClient(base_url=demo.main_url, access_token=None) as anonymous:
        login = anonymous.password_login(demo.moderator_id, demo.moderator_password)
    with MatrixClient(base_url=demo.main_url, access_token=login.access_token) as client:
        yield client
        client.logout()


@pytest.mark.browser
def test_make_runs_demo_ends_with_the_guest_in_element_calls_call_view(make_run: MakeRun) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    demo = make_run.wait_until_running()
    assert "Call: Element Call embedded in the lobby" in make_run.output, make_run.output

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = chromium.new_context(permissions=["camera", "microphone"])
        page = context.new_page()
        # The printed invite link, a name, and the lobby (Element Call preloads out of sight).
        page.goto(f"{demo.url}/j/{demo.invite_token}")
        page.get_by_label("Your name").fill("Fay")
        page.get_by_role("button", name="Ask to join").click()
        expect(page.get_by_role("heading", level=2)).to_have_text(
            "Waiting for a moderator", timeout=LIVE
        )

        let_in_from_the_dashboard(demo)

        # Element Call's call view: its hang-up button (no lobby of its own, nothing to click).
        call = page.frame_locator("#call-frame")
        expect(call.get_by_test_id("incall_leave")).to_be_visible(timeout=LIVE)
        session = page.evaluate("JSON.parse(document.getElementById('session-json').textContent)")
        # Main lists the guest's device in the call (read as the demo's moderator), while the
        # tab is open: closing it ends the membership by the delayed leave.
        state_key = f"_{session['userId']}_{session['deviceId']}_m.call"
        with signed_in_on_main(demo) as element:
            membership = wait_for(
                lambda: element.state_event(demo.room_id, CALL_MEMBER_EVENT, state_key),
                what="the guest's call membership on main",
                timeout=30,
            )
        context.close()
        chromium.close()
    assert membership["application"] == "m.call"
    assert membership["device_id"] == session["deviceId"]

    make_run.ctrl_c()

    stopped_everything(make_run)


def test_make_run_started_by_a_script_with_ctrl_c_ignored_still_stops_on_ctrl_c(
    make_run_from_a_script: MakeRun,
) -> None:
    make_run_from_a_script.wait_until_running()

    make_run_from_a_script.ctrl_c()

    stopped_everything(make_run_from_a_script)
