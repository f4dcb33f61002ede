"""Lobby load: what K waiting guests, each with its lobby's long poll open, cost the web server.

Setup (not measured): K guests (and a few probes) ask to join one room through the join form
and wait on the moderator's queue.

Measured, on GuestGate's web server (gunicorn as deployed, guestgate/gunicorn_config.py: a
thread of a worker holds each long poll): its CPU time (utime + stime from /proc, master and
workers) and resident memory, idle and while the K long polls
(``GET /lobby/<id>/status?since=<version>``, renewed when one answers) are open for
``--lobby-seconds``; the latency of a plain status request (every 0.1 s) in both; and how long
after a moderator's decision (``join_request_deny`` returned) the guest's own long poll
answered, with only the probes polling and with all K polling. At the end every K's version is
bumped at once (as a homeserver retry note would) to time how fast all K polls answer.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from django.db import connection
from django.db.models import F
from django.utils import timezone

from bench import measure
from bench.burst import counts_text, phase_timeout, status_counts
from bench.probes import LatencyProbe, MemoryWatch, cpu_seconds, milliseconds, tree_rss_mib
from bench.proxy import guest_browser
from bench.report import Outcome, median, p95, table
from bench.runner import environment_now, load_average, write_json
from bench.stack import BenchError, Stack
from devtools.guestbrowser import GuestBrowser
from matrix import MatrixClient
from rooms import live
from rooms.dbsignal import change_signal
from rooms.guest_views import LONG_POLL_SECONDS
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import join_request_deny

Status = JoinRequest.Status

PROBES = 5  # guests denied per phase, their long polls timed
SETUP_THREADS = 16
IDLE_SECONDS = 5.0
DECISION_GAP_SECONDS = 1.0  # between two denials in the quiet phase
CPU_EVERY = 0.5


@dataclass
class Waiting:
    number: int
    browser: GuestBrowser
    public_id: str = ""
    version: int = 0


@dataclass
class Poller:
    """One waiting guest's lobby page: a long poll, renewed whenever it answers."""

    guest: Waiting
    answered: list[float] = field(default_factory=list)  # perf_counter() of each answer
    errors: list[str] = field(default_factory=list)
    sent: threading.Event = field(default_factory=threading.Event)
    final: str = ""  # the status that ended the polling, if any

    def run(self, stop: threading.Event) -> None:
        version = self.guest.version
        path = f"{self.guest.browser.lobby_path}/status"
        while not stop.is_set():
            self.sent.set()
            try:
                answer = self.guest.browser.http.get(
                    path, params={"since": version}, timeout=LONG_POLL_SECONDS + 15
                )
                answer.raise_for_status()
                state: dict[str, Any] = answer.json()
            except (httpx.HTTPError, ValueError) as error:
                self.errors.append(repr(error))
                stop.wait(1.0)
                continue
            self.answered.append(time.perf_counter())
            version = state["version"]
            if state["status"] not in JoinRequest.OPEN:
                self.final = state["status"]
                return


@dataclass
class Decision:
    called: float
    returned: float
    told: float | None


def _cpu_window(pid: int, seconds: float) -> tuple[float, float]:
    """CPU use of ``pid`` over the next ``seconds``: (% of one core, machine busy %)."""
    machine_before = _machine_ticks()
    before, start = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - before, time.perf_counter() - start
    busy, total = (a - b for a, b in zip(_machine_ticks(), machine_before, strict=True))
    return 100 * used / elapsed, 100 * busy / total if total else 0.0


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _decide(
    scene: measure.Scene, guests: Sequence[Waiting], gap: float, window_end: float | None = None
) -> list[Decision]:
    """Deny each guest in turn while its long poll is open; when its lobby was told."""
    pollers = [Poller(guest) for guest in guests]
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in pollers]
    for thread in threads:
        thread.start()
    for poller in pollers:
        poller.sent.wait(10)
    time.sleep(0.5)  # the long polls are waiting at the server
    decisions = []
    for guest, poller in zip(guests, pollers, strict=True):
        join_request = JoinRequest.objects.select_related("room").get(public_id=guest.public_id)
        called = time.perf_counter()
        join_request_deny(join_request, moderator=scene.moderator_id, reason="benchmark")
        returned = time.perf_counter()
        deadline = returned + LONG_POLL_SECONDS + 5
        while not poller.final and time.perf_counter() < deadline:
            time.sleep(0.002)
        told = poller.answered[-1] if poller.final else None
        decisions.append(Decision(called, returned, told))
        if window_end is not None:
            gap = max(
                0.2, (window_end - time.perf_counter()) / max(1, len(guests) - len(decisions))
            )
        time.sleep(gap)
    stop.set()
    return decisions


def run(
    stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, args: argparse.Namespace
) -> Outcome:
    k: int = args.lobby_guests
    seconds: float = args.lobby_seconds
    pid = stack.web.pid
    print(f"Lobby load: {k} waiting guests' long polls for {seconds:.0f} s")
    scene = measure.set_scene(stack.pair, stack.web_url, guest_appservice, bot)
    room = CallRoom.objects.get(room_id=scene.room_id)
    everyone = [Waiting(n, guest_browser(stack.web_url)) for n in range(1, k + 2 * PROBES + 1)]

    def arrive(guest: Waiting) -> None:
        answer = guest.browser.ask_to_join(scene.invite_token, f"Waiting Guest {guest.number}")
        if answer.status_code != 302:
            raise BenchError(f"guest {guest.number}: the join form answered {answer.status_code}")
        guest.public_id = (guest.browser.lobby_path or "").rstrip("/").rsplit("/", 1)[-1]

    print(f"  setup: {len(everyone)} guests ask to join", flush=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(arrive, everyone))
    requests = JoinRequest.objects.filter(room=room)
    deadline = time.perf_counter() + phase_timeout(len(everyone))
    while requests.filter(status=Status.WAITING).count() < len(everyone):
        if time.perf_counter() > deadline:
            counts = counts_text(status_counts(requests))
            raise BenchError(f"not every guest reached the queue: {counts}")
        time.sleep(0.2)
    versions = {str(public_id): v for public_id, v in requests.values_list("public_id", "version")}
    for guest in everyone:
        guest.version = versions[guest.public_id]
    print(f"  setup: all waiting after {time.perf_counter() - started:.0f} s", flush=True)
    quiet_probes = everyone[k : k + PROBES]
    load_probes = everyone[k + PROBES :]
    waiting = everyone[:k]

    # A plain status request of one waiting guest, every 0.1 s, throughout.
    probe_client = httpx.Client(
        base_url=stack.web_url, cookies=waiting[0].browser.http.cookies, timeout=30
    )
    latency = LatencyProbe(probe_client, f"{waiting[0].browser.lobby_path}/status").start()
    try:
        time.sleep(3)  # the last provisioning tasks and pushes settle
        idle_start = time.perf_counter()
        idle_rss = tree_rss_mib(pid)
        idle_cpu, idle_machine = _cpu_window(pid, IDLE_SECONDS)
        idle_end = time.perf_counter()

        print(f"  quiet: denying {PROBES} guests, one long poll each open", flush=True)
        quiet = _decide(scene, quiet_probes, DECISION_GAP_SECONDS)

        print(f"  load: {k} long polls open", flush=True)
        stop = threading.Event()
        pollers = [Poller(guest) for guest in waiting]
        threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in pollers]
        opening = time.perf_counter()
        for thread in threads:
            thread.start()
        for poller in pollers:
            poller.sent.wait(30)
        time.sleep(2.0)  # the last requests reach the server
        opened = time.perf_counter() - opening
        memory = MemoryWatch(pid, every=CPU_EVERY).start()
        load_start = time.perf_counter()
        decisions: list[Decision] = []
        decider = threading.Thread(
            target=lambda: decisions.extend(
                _decide(scene, load_probes, 0, window_end=load_start + seconds - 1)
            ),
            daemon=True,
        )
        decider.start()
        load_cpu, load_machine = _cpu_window(pid, seconds)
        load_end = time.perf_counter()
        memory.stop()
        decider.join(timeout=LONG_POLL_SECONDS + 10)
        answered_in_window = sum(
            sum(load_start <= t <= load_end for t in p.answered) for p in pollers
        )

        # All K versions change at once: how long until every long poll has answered?
        before = [len(p.answered) for p in pollers]
        ids = [guest.public_id for guest in waiting]
        stop.set()
        bumped = time.perf_counter()
        JoinRequest.objects.filter(public_id__in=ids).update(
            version=F("version") + 1, updated_at=timezone.now()
        )
        herd_deadline = bumped + LONG_POLL_SECONDS + 10
        while time.perf_counter() < herd_deadline and any(
            len(p.answered) <= b and not p.errors for p, b in zip(pollers, before, strict=True)
        ):
            time.sleep(0.01)
        herd = [
            p.answered[b] - bumped
            for p, b in zip(pollers, before, strict=True)
            if len(p.answered) > b
        ]
        for thread in threads:
            thread.join(timeout=LONG_POLL_SECONDS + 5)
    finally:
        latency.stop()
        probe_client.close()
        for guest in everyone:
            guest.browser.close()

    outcome = Outcome(f"lobby {k}")
    load_rss = memory.peak()
    threads_peak = max((s.threads for s in memory.samples), default=0)
    errors = [e for p in pollers for e in p.errors]
    per_100 = (load_cpu - idle_cpu) / k * 100
    rows = [
        ("web server CPU, % of one core", f"{idle_cpu:.1f}", f"{load_cpu:.1f}"),
        ("  above idle, per 100 waiting guests", "", f"{per_100:.1f}"),
        ("machine busy, % of all CPUs", f"{idle_machine:.0f}", f"{load_machine:.0f}"),
        ("web server RSS, MiB (peak)", f"{idle_rss:.1f}", f"{load_rss:.1f}"),
        ("  per waiting guest, KiB", "", f"{(load_rss - idle_rss) * 1024 / k:.0f}"),
        ("web server threads (peak)", "", str(threads_peak)),
        (
            "DB queries/s, inferred: ~4 per answered poll (+ the watchers' per commit)",
            "0",
            f"~{4 * answered_in_window / seconds:.0f}",
        ),
        ("long polls answered in the window / errors", "", f"{answered_in_window} / {len(errors)}"),
        (f"seconds to open the {k} long polls", "", f"{opened:.1f}"),
    ]
    outcome.tables.append(
        table((f"lobby load, {seconds:.0f} s window", "idle", f"{k} long polls"), rows)
    )

    def told_ms(decided: Sequence[Decision], since_call: bool) -> list[float]:
        return [
            ((d.told - (d.called if since_call else d.returned)) * 1000)
            for d in decided
            if d.told is not None
        ]

    plain_idle = milliseconds(latency.window(idle_start, idle_end))
    plain_load = milliseconds(latency.window(load_start, load_end))
    latency_rows = [
        _spread_row(
            "deny returned -> that guest's long poll answered",
            told_ms(quiet, False),
            told_ms(decisions, False),
        ),
        _spread_row(
            "deny called -> long poll answered", told_ms(quiet, True), told_ms(decisions, True)
        ),
        _spread_row(
            "deny call itself (bot kicks on main)",
            [(d.returned - d.called) * 1000 for d in quiet],
            [(d.returned - d.called) * 1000 for d in decisions],
        ),
        _spread_row("plain GET status (no since), every 0.1 s", plain_idle, plain_load),
    ]
    if herd:
        latency_rows.append(
            (
                f"all {k} versions bumped at once -> long polls answered",
                "-",
                f"{len(herd)} of {k}: {median(herd) * 1000:.0f} / {p95(herd) * 1000:.0f} / "
                f"{max(herd) * 1000:.0f}",
            )
        )
    outcome.tables.append(
        table(
            ("ms: median / p95 / max (n)", f"{PROBES} polls (quiet)", f"{k} polls (load)"),
            latency_rows,
        )
    )
    untold = sum(d.told is None for d in [*quiet, *decisions])
    notes = [
        "long polls: woken by one watcher thread per process that looks when the database "
        f"signals a commit ({_signal_kind()}; rooms/dbsignal.py), timeout "
        f"{LONG_POLL_SECONDS:.0f} s; the web server is gunicorn (guestgate/gunicorn_config.py)"
    ]
    if untold:
        notes.append(f"*** {untold} denied guests' long polls never answered ***")
    if errors:
        notes.append(f"long-poll errors: {len(errors)}, e.g. {errors[0]}")
    outcome.tables.append("\n".join(notes))
    outcome.verdict(f"every decision reached its lobby ({k} polls open)", untold == 0)
    outcome.verdict(f"no long-poll errors with {k} open", not errors)

    write_json(
        args.json_dir / f"lobby-{k}.json",
        {
            "benchmark": "lobby_load",
            "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "environment": {**environment_now(), "load average at the end": load_average()},
            "parameters": {"guests": k, "seconds": seconds, "probes": PROBES},
            "web_cpu_percent": {"idle": idle_cpu, "load": load_cpu},
            "machine_busy_percent": {"idle": idle_machine, "load": load_machine},
            "web_rss_mib": {"idle": idle_rss, "load_peak": load_rss},
            "web_threads_peak": threads_peak,
            "polls_answered_in_window": answered_in_window,
            "poll_errors": errors[:20],
            "told_ms": {
                "quiet": told_ms(quiet, False),
                "load": told_ms(decisions, False),
            },
            "plain_status_ms": {"idle": plain_idle, "load": plain_load},
            "herd_s": herd,
            "verdicts": dict(outcome.verdicts),
        },
    )
    return outcome


def _signal_kind() -> str:
    signal = change_signal()
    if signal is None:
        return f"none here: it polls every {live.TICK_SECONDS} s"
    signal.close()
    return "SQLite: inotify on the log" if connection.vendor == "sqlite" else "PostgreSQL NOTIFY"


def _spread_row(name: str, quiet: Sequence[float], load: Sequence[float]) -> tuple[str, str, str]:
    def spread(values: Sequence[float]) -> str:
        if not values:
            return "-"
        return f"{median(values):.0f} / {p95(values):.0f} / {max(values):.0f} ({len(values)})"

    return (name, spread(quiet), spread(load))
