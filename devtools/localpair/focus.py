"""Start and stop the local pair's third process: the call's focus (``devtools.rtcfocus``).

The same safety rules as the homeservers (``devtools.localpair.process``): we only signal the
PID we recorded, and only while ``/proc/<pid>/cmdline`` shows our focus on this pair's port.
``process.up`` and ``process.down`` call these under the pair's lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools.localpair import LocalPair
from devtools.localpair.config import authority_files

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_READY_SECONDS = 15.0


def _pid_file(pair: LocalPair) -> Path:
    return pair.directory.resolve() / "rtcfocus.pid"


def _log_file(pair: LocalPair) -> Path:
    return pair.directory.resolve() / "rtcfocus.log"


def _command(pair: LocalPair) -> list[str]:
    gate_port = pair.appservice_url.rsplit(":", 1)[1]
    return [
        sys.executable,
        "-m",
        "devtools.rtcfocus",
        *["--port", str(pair.rtc_focus_port), "--livekit-port", str(pair.livekit_port)],
        *["--guest-server-name", pair.guest.server_name],
        *["--ca-file", str(authority_files(pair).certificate)],
        *["--allow-origin", pair.appservice_url, "--allow-origin", f"http://localhost:{gate_port}"],
    ]


def _is_our_focus(pid: int, pair: LocalPair) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"devtools.rtcfocus" in argv and str(pair.rtc_focus_port).encode() in argv


def focus_pid(pair: LocalPair) -> int | None:
    """The PID of this pair's running focus, from our PID file; None if it is not running."""
    try:
        pid = int(_pid_file(pair).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_our_focus(pid, pair) else None


def focus_answers(pair: LocalPair) -> bool:
    try:
        answer = httpx.get(f"{pair.rtc_focus_url}/healthz", timeout=1.0, trust_env=False)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def focus_up(pair: LocalPair) -> int | None:
    """Start the focus unless it runs; return the PID this call started, if any."""
    if focus_pid(pair) is not None:
        return None
    with _log_file(pair).open("ab") as log:
        process = subprocess.Popen(
            _command(pair),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like the homeservers: outlives a Ctrl-C of `make run`
        )
    _CHILDREN[process.pid] = process
    _pid_file(pair).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + _READY_SECONDS
    while not focus_answers(pair):
        if process.poll() is not None or time.monotonic() > deadline:
            focus_down(pair)
            raise RuntimeError(f"the call's focus did not start; see {_log_file(pair)}")
        time.sleep(0.05)
    return process.pid


def focus_down(pair: LocalPair) -> int | None:
    """Stop our focus of this pair, if it runs; return its PID."""
    pid = focus_pid(pair)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _is_our_focus(pid, pair) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_our_focus(pid, pair):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _pid_file(pair).unlink(missing_ok=True)
    return pid
