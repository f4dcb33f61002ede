"""Start, stop and probe the two Synapse processes of a local pair.

Safety rules: we only ever signal a PID we recorded ourselves (``guestgate.pid`` in the server's
directory) and only while ``/proc/<pid>/cmdline`` shows a Synapse homeserver running our config
file; a port held by anything else stops ``up`` before it starts anything (MATRIX-LAB P10: a new
instance would die while the readiness probe passed against the old one). A file lock in the
pair's directory serialises ``up`` and ``down`` across processes (pytest workers, ``make run``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools.localpair import LocalHomeserver, LocalPair
from devtools.localpair.admin import local_admin_token
from devtools.localpair.config import (
    ServerFiles,
    authority_files,
    server_files,
    write_pair_config,
)
from devtools.localpair.focus import focus_down, focus_up

_LOCK_FILE_NAME = "homeservers.lock"
_STOP_GRACE_SECONDS = 15.0
_KILL_GRACE_SECONDS = 5.0
_PROBE_TIMEOUT_SECONDS = 2.0
_POLL_SECONDS = 0.1
_LOG_TAIL_LINES = 30

# Popen objects of the servers this process started: kept so they are reaped (no zombies
# while a pytest session runs down) and not garbage-collected with a ResourceWarning.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Size of Synapse's log when we started each child: a failure shows this run's lines only.
_LOG_OFFSETS: dict[int, int] = {}


class LocalPairError(RuntimeError):
    """The local pair could not be started or stopped; the message says why."""


class PortInUseError(LocalPairError):
    """A port of the pair is held by a process we did not start."""


class StartupError(LocalPairError):
    """A homeserver exited or did not become ready in time; the message has its log tail."""


@dataclass(frozen=True)
class ServerStatus:
    """What one homeserver of the pair is doing right now."""

    role: str
    server_name: str
    client_url: str
    federation_port: int
    pid: int | None  # from our PID file, only while that process is our Synapse
    running: bool
    ready: bool  # /health on the client port and the federation version answer 200
    log_path: Path

    @property
    def federation_url(self) -> str:
        return f"https://127.0.0.1:{self.federation_port}"

    def as_dict(self) -> dict[str, Any]:
        """Return this status as JSON-ready values."""
        return {
            "role": self.role,
            "server_name": self.server_name,
            "client_url": self.client_url,
            "federation_url": self.federation_url,
            "federation_port": self.federation_port,
            "pid": self.pid,
            "running": self.running,
            "ready": self.ready,
            "log": str(self.log_path),
        }


@dataclass(frozen=True)
class PairStatus:
    """Both homeservers of a pair, plus what the call that produced this status changed."""

    profile: str
    guest: ServerStatus
    main: ServerStatus
    # (role, pid) of each server this call started (up) or stopped (down).
    changed: tuple[tuple[str, int], ...] = field(default=())

    @property
    def servers(self) -> tuple[ServerStatus, ServerStatus]:
        return (self.guest, self.main)

    @property
    def ready(self) -> bool:
        return all(server.ready for server in self.servers)

    @property
    def running(self) -> bool:
        return any(server.running for server in self.servers)

    def to_json(self) -> str:
        """Return the status as JSON: base URLs, server names, PIDs and readiness per role."""
        return json.dumps(
            {
                "profile": self.profile,
                "ready": self.ready,
                "servers": {server.role: server.as_dict() for server in self.servers},
                "changed": dict(self.changed),
            },
            indent=2,
        )


def status(pair: LocalPair) -> PairStatus:
    """Report whether each homeserver of ``pair`` runs (from our PID file) and is ready.

    Stale PID files are removed when no ``up`` or ``down`` holds the lock at the moment.
    """
    with _try_lock(pair) as locked:
        if locked:
            for server in pair.servers:
                _our_pid(server_files(server), clean_stale=True)
        return _status(pair)


def up(pair: LocalPair, timeout: float = 60.0) -> PairStatus:
    """Start whichever homeserver of ``pair`` is not running, and wait until both are ready.

    Idempotent: a server already running from our PID file is left alone. Raises
    ``PortInUseError`` (before starting anything) if a port is taken by another process, and
    ``StartupError`` if a server exits or is not ready within ``timeout`` seconds; servers this
    call started are stopped again in that case.
    """
    deadline = time.monotonic() + timeout
    with _lock(pair, deadline):
        write_pair_config(pair)
        pids = {
            server.role: _our_pid(server_files(server), clean_stale=True) for server in pair.servers
        }
        to_start = [server for server in pair.servers if pids[server.role] is None]
        _check_ports_free(pair, to_start)
        started: dict[str, int] = {}
        try:
            for server in to_start:
                started[server.role] = _spawn(server)
            pids.update(started)
            _wait_until_ready(pair, pids, deadline)
            local_admin_token(pair.guest)  # GUEST_ADMIN_TOKEN_FILE of devtools.settings
            focus_up(pair)  # the call's focus: the guest homeserver's MSC4143 transport
        except BaseException:
            # Leave nothing half-started behind; the original error is the one to report.
            with contextlib.suppress(LocalPairError):
                _stop_pids(pair, [s for s in pair.servers if s.role in started])
            raise
        return _status(pair, changed=tuple(started.items()))


def ensure_up(pair: LocalPair, timeout: float = 60.0) -> tuple[PairStatus, bool]:
    """Like ``up``, and say whether this call started anything (then the caller stops it)."""
    result = up(pair, timeout=timeout)
    return result, bool(result.changed)


def down(
    pair: LocalPair, timeout: float = 60.0, *, roles: tuple[str, ...] = ("guest", "main")
) -> PairStatus:
    """Stop the homeservers of ``pair`` that we started; never touch any other process.

    Sends SIGTERM to the PID in our PID file only while it is our Synapse, waits up to 15 s,
    then SIGKILLs that same PID. ``timeout`` bounds the wait for a concurrent ``up``'s lock.
    ``roles``: stop only these (an outage of main alone); ``up`` starts them again.
    """
    with _lock(pair, time.monotonic() + timeout):
        stopped = _stop_pids(pair, [server for server in pair.servers if server.role in roles])
        if "guest" in roles:
            focus_down(pair)
        return _status(pair, changed=tuple(stopped.items()))


# --- processes ----------------------------------------------------------------------------


def _spawn(server: LocalHomeserver) -> int:
    """Start ``server``'s Synapse in its own session and record its PID at once."""
    files = server_files(server)
    log_offset = files.log.stat().st_size if files.log.exists() else 0
    with files.console.open("wb") as console:
        process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "--config-path", str(files.config)],
            # P10: never inside site-packages, where synapse/types shadows the stdlib types.
            cwd=files.directory,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal or the end of `make run` does not kill it.
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    _LOG_OFFSETS[process.pid] = log_offset
    _write_pid_file(files.pid, process.pid)
    return process.pid


def _stop_pids(pair: LocalPair, servers: list[LocalHomeserver]) -> dict[str, int]:
    """SIGTERM our live Synapse of each of ``servers``, then SIGKILL stragglers; clean PID files."""
    targets: dict[str, tuple[int, ServerFiles]] = {}
    for server in servers:
        files = server_files(server)
        pid = _our_pid(files, clean_stale=True)
        if pid is not None:
            targets[server.role] = (pid, files)
            _signal_if_ours(pid, files, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    remaining = _wait_gone(targets, deadline)
    for pid, files in remaining.values():
        _signal_if_ours(pid, files, signal.SIGKILL)
    remaining = _wait_gone(remaining, time.monotonic() + _KILL_GRACE_SECONDS)
    if remaining:
        described = ", ".join(f"{role} (pid {pid})" for role, (pid, _) in remaining.items())
        raise LocalPairError(f"could not stop {described} of the {pair.profile} pair")
    for _, files in targets.values():
        files.pid.unlink(missing_ok=True)
    return {role: pid for role, (pid, _) in targets.items()}


def _wait_gone(
    targets: dict[str, tuple[int, ServerFiles]], deadline: float
) -> dict[str, tuple[int, ServerFiles]]:
    remaining = dict(targets)
    while remaining:
        remaining = {
            role: (pid, files)
            for role, (pid, files) in remaining.items()
            if _is_our_synapse(pid, files)
        }
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    return remaining


def _signal_if_ours(pid: int, files: ServerFiles, signum: signal.Signals) -> None:
    # Checked right before each signal: a PID may have been reused since the last look.
    if _is_our_synapse(pid, files):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _our_pid(files: ServerFiles, *, clean_stale: bool) -> int | None:
    """Return the PID from our PID file if it is our live Synapse; else None (stale file)."""
    try:
        pid = int(files.pid.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        pid = 0
    if pid > 0 and _is_our_synapse(pid, files):
        return pid
    if clean_stale:
        files.pid.unlink(missing_ok=True)
    return None


def _is_our_synapse(pid: int, files: ServerFiles) -> bool:
    """True while ``pid`` is a live Synapse homeserver started with ``files.config``."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            # Started by this process with that command line. Its /proc cmdline may still be
            # ours for a moment after fork (before exec): do not read it (seen in CI, where it
            # made a starting server count as exited and be left running).
            return True
        del _CHILDREN[pid]  # reaped: the PID is free for reuse by an unrelated process now
        return False
    try:
        # A zombie's cmdline is empty, so an exited but unreaped process does not count.
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"synapse.app.homeserver" in argv and os.fsencode(files.config) in argv


def _write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


# --- ports and readiness ------------------------------------------------------------------


def _check_ports_free(pair: LocalPair, servers: list[LocalHomeserver]) -> None:
    taken = {
        port: f"port {port} ({kind} port of the {pair.profile} {server.role} homeserver)"
        for server in servers
        for kind, port in (("client", server.client_port), ("federation", server.federation_port))
        if _port_taken(port)
    }
    if taken:
        pattern = "|".join(f":{port} " for port in taken)
        raise PortInUseError(
            f"{'; '.join(taken.values())}: already in use by a process GuestGate did not "
            f"start, so nothing was started. Find it with: ss -ltnp | grep -E '{pattern}'"
        )


def _port_taken(port: int) -> bool:
    """True if something listens on 127.0.0.1:``port`` (or on all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Twisted does: ignores TIME_WAIT leftovers of a server we just stopped, but still
        # fails against a listening socket.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _wait_until_ready(pair: LocalPair, pids: dict[str, int | None], deadline: float) -> None:
    pending = {server.role: server for server in pair.servers}
    with _probe_client(pair) as client:
        while pending:
            for role, server in list(pending.items()):
                pid = pids[role]
                files = server_files(server)
                if pid is None or not _is_our_synapse(pid, files):
                    raise StartupError(
                        f"the {pair.profile} {role} homeserver exited before it was ready.\n"
                        f"{_log_tail(files, pid)}"
                    )
                if _probe(client, server):
                    del pending[role]
            if not pending:
                return
            if time.monotonic() >= deadline:
                roles = ", ".join(pending)
                tails = "\n".join(
                    _log_tail(server_files(s), pids[s.role]) for s in pending.values()
                )
                raise StartupError(
                    f"the {pair.profile} homeserver(s) {roles} were not ready in time.\n{tails}"
                )
            time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _probe_client(pair: LocalPair) -> Iterator[httpx.Client]:
    authority = authority_files(pair).certificate
    # Verify the federation listener against our CA: this also proves the certificates work.
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(authority)) if authority.exists() else False
    )
    with httpx.Client(
        verify=verify,
        timeout=_PROBE_TIMEOUT_SECONDS,
        follow_redirects=False,
        trust_env=False,  # never send loopback probes through an HTTP(S)_PROXY
    ) as client:
        yield client


def _probe(client: httpx.Client, server: LocalHomeserver) -> bool:
    urls = (
        f"{server.client_url}/health",
        f"https://127.0.0.1:{server.federation_port}/_matrix/federation/v1/version",
    )
    try:
        return all(client.get(url).status_code == 200 for url in urls)
    except httpx.HTTPError:
        return False


def _status(pair: LocalPair, changed: tuple[tuple[str, int], ...] = ()) -> PairStatus:
    with _probe_client(pair) as client:
        guest, main = (_server_status(client, server) for server in pair.servers)
    return PairStatus(profile=pair.profile, guest=guest, main=main, changed=changed)


def _server_status(client: httpx.Client, server: LocalHomeserver) -> ServerStatus:
    files = server_files(server)
    pid = _our_pid(files, clean_stale=False)
    return ServerStatus(
        role=server.role,
        server_name=server.server_name,
        client_url=server.client_url,
        federation_port=server.federation_port,
        pid=pid,
        running=pid is not None,
        ready=pid is not None and _probe(client, server),
        log_path=files.log,
    )


def _log_tail(files: ServerFiles, pid: int | None) -> str:
    """The last lines of the process output and of Synapse's log, to explain a failure."""
    parts = []
    offsets = {files.console: 0, files.log: _LOG_OFFSETS.get(pid or 0, 0)}
    for path, offset in offsets.items():
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        if lines:
            parts.append(f"--- last lines of {path} ---\n" + "\n".join(lines))
    return "\n".join(parts) or f"(no output in {files.console} or {files.log})"


# --- locking ------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(pair: LocalPair, deadline: float) -> Iterator[None]:
    """Hold the pair's lock, waiting until ``deadline`` for a concurrent up or down."""
    pair.directory.mkdir(parents=True, exist_ok=True)
    with (pair.directory / _LOCK_FILE_NAME).open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LocalPairError(
                        f"another process is starting or stopping the {pair.profile} pair "
                        f"(lock {pair.directory / _LOCK_FILE_NAME}); try again"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _try_lock(pair: LocalPair) -> Iterator[bool]:
    """Take the pair's lock if it is free right now; yield whether we hold it."""
    path = pair.directory / _LOCK_FILE_NAME
    if not pair.directory.exists():
        yield False
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
