"""Expiry sweep: M due guest accounts expired by GuestGate against bare deactivation calls.

DESIGN.md, "Performance targets": an expiry sweep of 10,000 due accounts with constant
memory, throughput at least 0.9x of bare deactivation calls, web requests unaffected.

Setup (not measured): 2 x M accounts registered on the guest homeserver through the
appservice (inhibit_login, 16 threads); M are recorded as GuestGate accounts (active,
registered, default policy, created longer ago than the policy's lifetime: all due).

Floor: the M others deactivated with bare calls (the appservice as the user,
``deactivate(erase=<policy>)``), by as many threads as the worker has, half before GuestGate's
sweep and half after it -> accounts/s over both. As many accounts as GuestGate expires, on
either side of it: the guest homeserver slows as its database grows (M deactivations), and a
floor measured only before the sweep, or over fewer accounts, favoured the floor.

GuestGate: the sweep as celery beat runs it (``accounts_claim_due()`` and
``expire_accounts.delay(batch)`` for each batch, every ``--sweep-every`` seconds, by default
beat's schedule), the worker expiring, until all M are ``expired`` -> accounts/s.

Watched throughout: the worker's resident memory (VmRSS with its children, every 0.2 s) and
the latency of a waiting guest's lobby status request (``GET /lobby/<id>/status``, every 0.1 s):
idle before, during the floor's deactivations, during the sweep.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from django.db.models import Count, Max, Min
from django.utils import timezone

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from accounts.services import default_policy
from bench import measure
from bench.probes import LatencyProbe, MemoryWatch, milliseconds
from bench.proxy import guest_browser
from bench.report import Outcome, median, p95, table
from bench.runner import environment_now, load_average, write_json
from bench.stack import WORKER_CONCURRENCY, BenchError, Stack
from devtools.localpair import LocalPair
from guestgate.celery import app as celery_app
from matrix import MatrixClient, MatrixError
from rooms.expiry import expire_accounts

Status = GuestAccount.Status

SETUP_THREADS = 16
#: Memory is "constant" if its peak after the first this many accounts does not grow.
MEMORY_FIRST_ACCOUNTS = 1000
IDLE_SECONDS = 5.0
SETTLE_SECONDS = 2.0
POLL_SECONDS = 0.25
PROGRESS_SECONDS = 5.0
#: Give up when no account was expired for this long (a sweep may wait up to --sweep-every).
STALL_SECONDS = 180.0
TARGET_THROUGHPUT = 0.9
TARGET_LATENCY = 1.2  # median under the sweep against idle
#: Growth of the worker's peak memory after its first 1000 accounts still called constant.
MEMORY_SLACK_MIB = 10.0


class Clients:
    """One appservice client per thread (each its own connection pool), closed together."""

    def __init__(self, pair: LocalPair) -> None:
        self._pair = pair
        self._local = threading.local()
        self._all: list[MatrixClient] = []
        self._lock = threading.Lock()

    def get(self) -> MatrixClient:
        client: MatrixClient | None = getattr(self._local, "client", None)
        if client is None:
            client = MatrixClient(
                base_url=self._pair.guest.client_url, access_token=self._pair.guest.as_token
            )
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        for client in self._all:
            client.close()


def _in_pool(
    threads: int, action: Callable[[str], None], items: Sequence[str], what: str
) -> list[str]:
    """Run ``action`` on every item with ``threads`` threads; the errors, as text."""
    errors: list[str] = []
    done = [0]
    started = time.perf_counter()
    last_print = [started]
    lock = threading.Lock()

    def one(item: str) -> None:
        try:
            action(item)
        except MatrixError as error:
            with lock:
                errors.append(f"{item}: {error!r}")
        with lock:
            done[0] += 1
            now = time.perf_counter()
            if now - last_print[0] > PROGRESS_SECONDS:
                last_print[0] = now
                print(f"    {what}: {done[0]}/{len(items)} ({now - started:.0f} s)", flush=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    return errors


@dataclass
class Sweep:
    at: float  # perf_counter()
    claimed: int
    batches: int


@dataclass
class Windows:
    """perf_counter() bounds of the phases, for the probes' samples."""

    idle: tuple[float, float] = (0.0, 0.0)
    floor: tuple[float, float] = (0.0, 0.0)  # the floor's first half, before the sweep
    sweep: tuple[float, float] = (0.0, 0.0)
    floor_after: tuple[float, float] = (0.0, 0.0)  # its second half


@dataclass
class Results:
    accounts: int
    floor_accounts: int
    sweep_every: float
    floor_seconds: float = 0.0  # both halves
    floor_errors: list[str] = field(default_factory=list)
    floor_halves: list[tuple[int, float]] = field(default_factory=list)  # (accounts, seconds)
    sweep_seconds: float = 0.0
    sweeps: list[Sweep] = field(default_factory=list)
    per_claim: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    incomplete: str = ""
    worker_errors: int = 0
    worker_retries: int = 0


def run(
    stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, args: argparse.Namespace
) -> Outcome:
    m: int = args.expiry_accounts
    floor_m = m
    beat = celery_app.conf.beat_schedule["sweep-expired-accounts"]["schedule"]
    sweep_every = float(args.sweep_every if args.sweep_every is not None else beat)
    pair = stack.pair
    policy = default_policy()
    results = Results(accounts=m, floor_accounts=floor_m, sweep_every=sweep_every)
    print(
        f"Expiry sweep: {m} due accounts through GuestGate (a sweep every {sweep_every:.0f} s), "
        f"{floor_m} by bare deactivation calls ({WORKER_CONCURRENCY} threads), half before "
        "and half after the sweep"
    )

    # A waiting guest whose lobby status the probe asks for (not due: created just now).
    scene = measure.set_scene(pair, stack.web_url, guest_appservice, bot)
    lobby = guest_browser(stack.web_url)
    answer = lobby.ask_to_join(scene.invite_token, "Latency Probe")
    if answer.status_code != 302:
        raise BenchError(f"the probe guest's join form answered {answer.status_code}")
    lobby.wait_for("waiting", timeout=60)

    tag = secrets.token_hex(3)
    ours = f"{pair.guest_user_prefix}x{tag}g"
    localparts = [f"{ours}{number:05d}" for number in range(m)]
    floor_ids = [
        f"@{pair.guest_user_prefix}x{tag}f{number:05d}:{pair.guest.server_name}"
        for number in range(floor_m)
    ]
    clients = Clients(pair)
    try:
        print(f"  setup: registering {m + floor_m} accounts ({SETUP_THREADS} threads)", flush=True)
        started = time.perf_counter()
        errors = _in_pool(
            SETUP_THREADS,
            lambda localpart: _register(clients.get(), localpart),
            [*localparts, *(user_id[1:].split(":", 1)[0] for user_id in floor_ids)],
            "registered",
        )
        if errors:
            raise BenchError(f"{len(errors)} registrations failed, e.g. {errors[0]}")
        print(f"  setup: registered in {time.perf_counter() - started:.0f} s", flush=True)
        now = timezone.now()
        GuestAccount.objects.bulk_create(
            [
                GuestAccount(
                    localpart=localpart,
                    user_id=f"@{localpart}:{pair.guest.server_name}",
                    display_name="Expiring Guest (Guest)",
                    status=Status.ACTIVE,
                    policy=policy,
                    registered_at=now,
                )
                for localpart in localparts
            ],
            batch_size=500,
        )
        ours_rows = GuestAccount.objects.filter(localpart__startswith=ours)
        ours_rows.update(created_at=now - policy.account_lifetime - timedelta(hours=1))

        worker_log = stack.log_dir / "worker.log"
        log_offset = worker_log.stat().st_size
        memory = MemoryWatch(stack.worker.pid).start()
        probe = LatencyProbe(lobby.http, f"{lobby.lobby_path}/status").start()
        page_client = httpx.Client(base_url=stack.web_url, timeout=30)
        page_probe = LatencyProbe(page_client, f"/j/{scene.invite_token}").start()
        windows = Windows()
        try:
            start = time.perf_counter()
            time.sleep(IDLE_SECONDS)
            windows.idle = (start, time.perf_counter())

            erase = policy.erase_on_expiry
            before, after = floor_ids[: (floor_m + 1) // 2], floor_ids[(floor_m + 1) // 2 :]
            windows.floor = _floor(results, clients, before, erase, "before the sweep")
            time.sleep(SETTLE_SECONDS)

            print(f"  GuestGate: sweeping {m} due accounts", flush=True)
            sweep_wall, sweep_start = time.time(), time.perf_counter()
            _sweep(results, ours_rows, sweep_every)
            windows.sweep = (sweep_start, time.perf_counter())
            results.sweep_seconds = windows.sweep[1] - windows.sweep[0]
            time.sleep(SETTLE_SECONDS)
            windows.floor_after = _floor(results, clients, after, erase, "after the sweep")
        finally:
            probe.stop()
            page_probe.stop()
            page_client.close()
            memory.stop()
            lobby.close()
        log = worker_log.read_bytes()[log_offset:]
        results.worker_errors = log.count(b'"level": "ERROR"') + log.count(b" ERROR ")
        results.worker_retries = log.count(b"; retry ")
    finally:
        clients.close()
    results.statuses = _status_counts(ours_rows)
    results.per_claim = _per_claim(ours_rows, sweep_wall, sweep_start)
    return _report(
        args.json_dir,
        results,
        memory,
        (probe, page_probe),
        windows,
        ours_rows,
        sweep_wall,
        sweep_start,
    )


def _floor(
    results: Results, clients: Clients, user_ids: list[str], erase: bool, when: str
) -> tuple[float, float]:
    """Deactivate ``user_ids`` with bare calls; the perf_counter() bounds it took."""
    print(f"  floor: deactivating {len(user_ids)} accounts ({when})", flush=True)
    start = time.perf_counter()
    results.floor_errors += _in_pool(
        WORKER_CONCURRENCY,
        lambda user_id: clients.get().as_user(user_id).deactivate(erase=erase),
        user_ids,
        f"deactivated (floor, {when})",
    )
    end = time.perf_counter()
    results.floor_seconds += end - start
    results.floor_halves.append((len(user_ids), end - start))
    return start, end


def _register(appservice: MatrixClient, localpart: str) -> None:
    appservice.register_appservice_user(localpart)


def _status_counts(rows: Any) -> dict[str, int]:
    return {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("pk"))}


def _sweep(results: Results, rows: Any, sweep_every: float) -> None:
    """Sweep as beat does (every ``sweep_every`` s; 0: when the last claim is done) until all
    ``rows`` are expired, or nothing moved for `STALL_SECONDS`."""
    started = time.perf_counter()
    next_sweep = started
    last_print = started
    last_progress, last_expired = started, -1
    while True:
        counts = _status_counts(rows)
        expired = counts.get(Status.EXPIRED, 0)
        now = time.perf_counter()
        if expired == results.accounts:
            return
        if expired != last_expired:
            last_progress, last_expired = now, expired
        elif now - last_progress > STALL_SECONDS:
            results.incomplete = f"no account expired for {STALL_SECONDS:.0f} s"
            print(f"  gave up: {results.incomplete}", flush=True)
            return
        due = now >= next_sweep if sweep_every else counts.get(Status.EXPIRING, 0) == 0
        if due:
            batches = accounts_claim_due()
            for batch in batches:
                expire_accounts.delay(batch)
            claimed = sum(len(batch) for batch in batches)
            results.sweeps.append(Sweep(now, claimed, len(batches)))
            print(
                f"    {now - started:6.1f} s: sweep {len(results.sweeps)} claimed {claimed} "
                f"in {len(batches)} batches",
                flush=True,
            )
            next_sweep = now + sweep_every
        if now - last_print > PROGRESS_SECONDS:
            last_print = now
            print(f"    {now - started:6.1f} s: {_counts_text(counts)}", flush=True)
        time.sleep(POLL_SECONDS)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


def _per_claim(rows: Any, wall: float, start: float) -> list[dict[str, Any]]:
    """Each sweep's claim: how many, from the claim until its last account was expired."""
    claims = (
        rows.exclude(expiry_claim="")
        .values("expiry_claim")
        .annotate(n=Count("pk"), since=Min("expiring_since"), last=Max("expired_at"))
        .order_by("since")
    )
    out = []
    for claim in claims:
        if claim["since"] is None or claim["last"] is None:
            continue
        out.append(
            {
                "accounts": claim["n"],
                "claimed_s": claim["since"].timestamp() - wall,
                "seconds": claim["last"].timestamp() - claim["since"].timestamp(),
            }
        )
    return out


def _report(
    json_dir: Path,
    results: Results,
    memory: MemoryWatch,
    probes: tuple[LatencyProbe, LatencyProbe],
    windows: Windows,
    rows: Any,
    wall: float,
    start: float,
) -> Outcome:
    m = results.accounts
    probe, page_probe = probes
    outcome = Outcome(f"expiry {m}")
    expired = results.statuses.get(Status.EXPIRED, 0)
    floor_done = results.floor_accounts - len(results.floor_errors)
    floor_rate = floor_done / results.floor_seconds if results.floor_seconds else 0.0
    gg_rate = expired / results.sweep_seconds if results.sweep_seconds else 0.0
    busy = sum(claim["seconds"] for claim in results.per_claim)
    busy_rate = sum(claim["accounts"] for claim in results.per_claim) / busy if busy else 0.0

    throughput_rows = [
        (
            "accounts expired / deactivated",
            f"{expired} of {m}",
            f"{floor_done} of {results.floor_accounts}",
            "",
            "",
            "",
        ),
        (
            "seconds (first sweep -> all expired / both halves of calls)",
            f"{results.sweep_seconds:.1f}",
            f"{results.floor_seconds:.1f}",
            "",
            "",
            "",
        ),
        (
            "throughput, accounts/s",
            f"{gg_rate:.1f}",
            f"{floor_rate:.1f}",
            _ratio(gg_rate, floor_rate),
            f">= {TARGET_THROUGHPUT}x",
            outcome.verdict(
                f"throughput >= {TARGET_THROUGHPUT}x bare deactivation",
                floor_rate > 0 and gg_rate / floor_rate >= TARGET_THROUGHPUT and expired == m,
            ),
        ),
        (
            "(ref) floor before / after the sweep, accounts/s",
            "",
            " / ".join(f"{n / seconds:.1f}" for n, seconds in results.floor_halves if seconds),
            "",
            "-",
            "",
        ),
        (
            "(ref) throughput while claims were being worked, accounts/s",
            f"{busy_rate:.1f}",
            f"{floor_rate:.1f}",
            _ratio(busy_rate, floor_rate),
            "-",
            "",
        ),
    ]
    outcome.tables.append(
        table(("expiry sweep", "GuestGate", "floor", "ratio", "target", "verdict"), throughput_rows)
    )
    claim_rows = [
        (
            f"sweep at {sweep.at - start:6.1f} s",
            str(sweep.claimed),
            str(sweep.batches),
        )
        for sweep in results.sweeps[:12]
    ]
    if len(results.sweeps) > 12:
        claim_rows.append((f"... {len(results.sweeps) - 12} more sweeps", "", ""))
    claim_rows.append(
        (
            "claimed in all / distinct claims recorded",
            str(sum(s.claimed for s in results.sweeps)),
            str(len(results.per_claim)),
        )
    )
    claim_rows += [
        (
            f"claim at {claim['claimed_s']:6.1f} s: all expired after",
            f"{claim['seconds']:.1f} s",
            f"{claim['accounts'] / claim['seconds']:.1f}/s" if claim["seconds"] else "-",
        )
        for claim in results.per_claim[:12]
    ]
    outcome.tables.append(table(("sweeps (as beat)", "accounts", "batches / rate"), claim_rows))

    # The worker's memory.
    idle = [s.rss_mib for s in memory.samples if windows.idle[0] <= s.at <= windows.idle[1]]
    baseline = median(idle) if idle else 0.0
    sweep_start, sweep_end = windows.sweep
    first_k = min(m, MEMORY_FIRST_ACCOUNTS)
    times = sorted(
        t.timestamp() - wall
        for t in rows.filter(status=Status.EXPIRED).values_list("expired_at", flat=True)
        if t is not None
    )
    kth = start + times[first_k - 1] if len(times) >= first_k else sweep_end
    peak_first = memory.peak(sweep_start, kth)
    peak_all = memory.peak(sweep_start, sweep_end + 1)
    end_rss = memory.samples[-1].rss_mib if memory.samples else 0.0
    memory_rows = [
        ("baseline (idle, median)", f"{baseline:.1f}"),
        ("peak during the floor (worker idle)", f"{memory.peak(*windows.floor):.1f}"),
        (f"peak during the first {first_k} accounts", f"{peak_first:.1f}"),
        ("peak during the whole sweep", f"{peak_all:.1f}"),
        ("at the end", f"{end_rss:.1f}"),
        ("samples", str(len(memory.samples))),
    ]
    if m > MEMORY_FIRST_ACCOUNTS:
        grown = peak_all - peak_first
        word = outcome.verdict(
            f"constant worker memory (peak after the first {first_k} grows "
            f"<= {MEMORY_SLACK_MIB:.0f} MiB)",
            grown <= MEMORY_SLACK_MIB,
        )
        memory_rows.append((f"growth after the first {first_k}: {grown:+.1f} MiB", word))
    for other in _other_runs(json_dir, m):
        memory_rows.append(
            (
                f"earlier run, M={other['accounts']} ({other['finished_at']}): baseline / peak",
                f"{other['rss_baseline_mib']:.1f} / {other['rss_peak_mib']:.1f}",
            )
        )
    outcome.tables.append(table(("worker RSS, MiB (with children)", "value"), memory_rows))

    # Web latency: the lobby status request (which also writes last_seen_at) and, as a
    # control, the join page (reads only).
    # The worker is busy only part of each sweep interval: the samples while a claim was
    # being worked on are what the sweep costs the web.
    busy = [
        (start + claim["claimed_s"], start + claim["claimed_s"] + claim["seconds"])
        for claim in results.per_claim
    ]
    latency: dict[str, dict[str, dict[str, float]]] = {}
    for title, key, samples_of in (
        ("GET /lobby/<id>/status, ms", "lobby_status", probe),
        ("(control) GET /j/<token>, read only, ms", "join_page", page_probe),
    ):
        latency_rows, latency[key] = _latency_rows(samples_of, windows, busy)
        outcome.tables.append(table((title, "n", "median", "p95", "max", "errors"), latency_rows))
    lobby_latency = latency["lobby_status"]
    if "idle" in lobby_latency and "busy" in lobby_latency:
        ratio = lobby_latency["busy"]["median"] / lobby_latency["idle"]["median"]
        word = outcome.verdict(
            f"web requests unaffected (lobby status median while the worker expires <= "
            f"{TARGET_LATENCY}x idle)",
            ratio <= TARGET_LATENCY,
        )
        line = f"lobby status median while the worker expires: {ratio:.2f}x idle ({word})"
        if "floor" in lobby_latency:
            line += (
                f"; {lobby_latency['busy']['median'] / lobby_latency['floor']['median']:.2f}x "
                "the median during bare deactivations (same homeserver load)"
            )
        outcome.tables.append(line)
    notes = []
    if results.incomplete:
        notes.append(f"incomplete: {results.incomplete}")
    if results.floor_errors:
        notes.append(f"floor errors: {len(results.floor_errors)}, e.g. {results.floor_errors[0]}")
    notes.append(
        f"accounts at the end: {_counts_text(results.statuses)}; worker log: "
        f"{results.worker_errors} ERROR lines, {results.worker_retries} task retries"
    )
    outcome.tables.append("\n".join(notes))

    write_json(
        json_dir / f"expiry-{m}.json",
        {
            "benchmark": "expiry",
            "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "environment": {**environment_now(), "load average at the end": load_average()},
            "accounts": m,
            "floor_accounts": results.floor_accounts,
            "sweep_every_s": results.sweep_every,
            "throughput": {"guestgate": gg_rate, "busy": busy_rate, "floor": floor_rate},
            "seconds": {"guestgate": results.sweep_seconds, "floor": results.floor_seconds},
            "sweeps": [
                {"at_s": s.at - start, "claimed": s.claimed, "batches": s.batches}
                for s in results.sweeps
            ],
            "claims": results.per_claim,
            "statuses": results.statuses,
            "rss_baseline_mib": baseline,
            "rss_peak_first_mib": peak_first,
            "rss_peak_mib": peak_all,
            "rss_end_mib": end_rss,
            "latency_ms": latency,
            "floor_errors": results.floor_errors[:20],
            "incomplete": results.incomplete,
            "verdicts": dict(outcome.verdicts),
        },
    )
    return outcome


_WINDOW_NAMES = {
    "idle": "idle (before)",
    "floor": "during bare deactivations (floor)",
    "sweep": "during GuestGate's sweep (all of it)",
    "busy": "  while the worker was expiring",
}


def _latency_rows(
    probe: LatencyProbe, windows: Windows, busy: Sequence[tuple[float, float]]
) -> tuple[list[tuple[str, ...]], dict[str, dict[str, float]]]:
    rows: list[tuple[str, ...]] = []
    stats: dict[str, dict[str, float]] = {}
    spans = {
        "idle": [windows.idle],
        "floor": [windows.floor, windows.floor_after],
        "sweep": [windows.sweep],
    }
    spans["busy"] = list(busy)
    for name, intervals in spans.items():
        samples = [s for first, last in intervals for s in probe.window(first, last)]
        ok = milliseconds(samples)
        failed = str(len(samples) - len(ok))
        if not ok:
            rows.append((_WINDOW_NAMES[name], str(len(samples)), "-", "-", "-", failed))
            continue
        stats[name] = {"median": median(ok), "p95": p95(ok), "max": max(ok), "n": len(ok)}
        rows.append(
            (
                _WINDOW_NAMES[name],
                str(len(samples)),
                f"{median(ok):.1f}",
                f"{p95(ok):.1f}",
                f"{max(ok):.1f}",
                failed,
            )
        )
    return rows, stats


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor else "-"


def _other_runs(json_dir: Path, m: int) -> Iterable[dict[str, Any]]:
    """Earlier results at other sizes, to compare the worker's memory across sizes."""
    for path in sorted(json_dir.glob("expiry-*.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if other.get("accounts") != m and "rss_peak_mib" in other:
            yield other
