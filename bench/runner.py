"""The guest-flow benchmark's run: set the scene, send guests one at a time, report; and what
every benchmark of the suite shares (fresh database, environment, quiet logs, JSON out)."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from kombu.utils.url import maybe_sanitize_url

from accounts.selectors import spares_ready
from accounts.services import default_policy
from accounts.spares import REFILL_QUEUED as SPARES_REFILL_QUEUED
from bench import measure
from bench.report import Comparison, Outcome, breakdown_table, comparison_table, median, p95
from bench.stack import (
    WEB_WORKERS,
    WORKER_CONCURRENCY,
    BenchError,
    Stack,
    wait_until,
)
from devtools import processes
from guestgate import gunicorn_config
from guestgate.celery import app as celery_app
from matrix import MatrixClient
from matrix.client import JOIN_RACE_DELAYS

#: A moment between guests, so the pushes of one guest's events are not in the next's time.
SETTLE_SECONDS = 0.2
TARGET_RATIO = 1.2
_RACE_MARKER = b"lost the invite race"

Marks = dict[str, list[float]]


def run(
    stack: Stack,
    guest_appservice: MatrixClient,
    bot: MatrixClient,
    *,
    guests: int,
    warmup: int,
    cold: bool,
    json_path: Path,
) -> Outcome:
    """The guest flow on a running stack (the suite in bench/suite.py starts it)."""
    environment = {
        **environment_now(),
        "knocks and joins": "cold (guests leave after their turn)"
        if cold
        else "warm after the first join (guests stay in the room)",
    }
    print("Guest flow benchmark: GuestGate against the bare homeserver calls (floor)")
    print(f"  knocks and joins: {environment['knocks and joins']}")

    totals: dict[str, list[float]] = defaultdict(list)
    marks: dict[str, Marks] = defaultdict(lambda: defaultdict(list))

    def keep(path: str, timing: measure.Timing) -> None:
        totals[path].append(timing.total_ms)
        for name, value in timing.marks.items():
            marks[path][name].append(value)

    scene = measure.set_scene(stack.pair, stack.web_url, guest_appservice, bot)
    print(f"  room {scene.room_id} (one room for all; fresh users for every guest)\n")
    worker_log = stack.log_dir / "worker.log"
    worker_races_before = 0
    for number in range(1, warmup + guests + 1):
        counted = number > warmup
        if number == warmup + 1:  # the warm-up is over: count races from here on
            scene.floor_races.count = 0
            worker_races_before = worker_log.read_bytes().count(_RACE_MARKER)

        def guestgate_guest(name: str) -> tuple[measure.Timing, measure.Timing]:
            a, guest = measure.guestgate_knock(scene, name)
            time.sleep(SETTLE_SECONDS)
            b = measure.guestgate_approve(scene, guest)
            guest.browser.close()
            if cold:
                measure.leave(scene, guest.user_id)
            return a, b

        def floor_guest(name: str) -> tuple[measure.Timing, measure.Timing]:
            a, guest = measure.floor_knock(scene, name)
            time.sleep(SETTLE_SECONDS)
            b = measure.floor_approve(scene, guest)
            if cold:
                measure.leave(scene, guest.user_id)
            return a, b

        paths: list[tuple[str, Callable[[str], tuple[measure.Timing, measure.Timing]]]] = [
            ("guestgate", guestgate_guest),
            ("floor", floor_guest),
        ]
        if number % 2 == 0:  # alternate who goes first, so drift hits both alike
            paths.reverse()
        results: dict[str, tuple[measure.Timing, measure.Timing]] = {}
        for path, guest_through in paths:
            try:
                results[path] = guest_through(f"Bench Guest {number}")
            except BenchError as error:
                if (exited := stack.exited()) is not None:
                    raise BenchError(f"guest {number} ({path}): {exited}") from error
                raise
            time.sleep(SETTLE_SECONDS)
            _wait_for_spares(stack)
        if counted:
            for path, (a, b) in results.items():
                keep(f"{path} A", a)
                keep(f"{path} B", b)
        _progress(number, warmup + guests, counted, results)
    worker_races = worker_log.read_bytes().count(_RACE_MARKER) - worker_races_before
    floor_races = scene.floor_races.count
    scene.floor_joiner.close()

    comparisons = [
        Comparison(
            "A  name submitted -> knock on dashboard",
            totals["guestgate A"],
            totals["floor A"],
            TARGET_RATIO,
        ),
        Comparison(
            "A' (reference: floor until knock call returned)",
            totals["guestgate A"],
            marks["floor A"]["knock call returned"],
            None,
        ),
        Comparison(
            'A" (reference: floor without register and login, as for a spare account)',
            totals["guestgate A"],
            _without_register_and_login(totals["floor A"], marks["floor A"]),
            None,
        ),
        Comparison(
            "B  approve -> guest joined and told",
            totals["guestgate B"],
            totals["floor B"],
            TARGET_RATIO,
        ),
    ]
    _derive(marks["guestgate A"], "account registered (DB)", "join request created (DB)")
    _derive(marks["guestgate A"], "knock push recorded (DB)", "account registered (DB)")
    _derive(marks["guestgate A"], "status waiting (DB)", "join request created (DB)")
    spares_taken = len(marks["guestgate A"].pop("spare accounts taken (count)", []))
    _derive(
        marks["guestgate B"],
        "status joining seen (task started)",
        "approve returned (bot invited)",
    )
    _derive(
        marks["guestgate B"], "status joined seen by poll", "status joining seen (task started)"
    )
    _derive(marks["guestgate B"], "lobby long poll says joined", "status joined seen by poll")
    _derive(marks["floor A"], "knock in main's state", "knock call returned")
    _derive(marks["floor B"], "join call returned", "invite returned")
    _derive(marks["floor B"], "join in main's state", "join call returned")

    outcome = Outcome("guest flow")
    main_table = comparison_table(comparisons)
    for comparison in comparisons:
        if comparison.verdict == "MISS":
            main_table += (
                f"\n*** MISS: {comparison.step.split('  ', 1)[-1]}: {comparison.ratio:.2f}x the "
                f"floor (target <= {TARGET_RATIO}x) ***"
            )
        if comparison.target is not None:
            outcome.verdicts.append((comparison.step.split("  ", 1)[-1], comparison.verdict))
    outcome.tables.append(main_table)
    for path in ("guestgate A", "floor A", "guestgate B", "floor B"):
        outcome.tables.append(breakdown_table(path, marks[path]))
    outcome.tables.append(
        f"spare accounts (accounts/spares.py) taken by {spares_taken} of {guests} GuestGate "
        f"guests (the others registered and logged in on their way)\n"
        f"join retries after losing the invite/join race (MATRIX-LAB P8): GuestGate "
        f"{worker_races} (first after {JOIN_RACE_DELAYS[0]:.2f} s), floor {floor_races} "
        f"(each after {measure.FLOOR_RACE_RETRY_SECONDS:.2f} s)"
    )
    environment["load average at the end"] = load_average()

    report: dict[str, Any] = {
        "benchmark": "guest_flow",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment,
        "parameters": {"guests": guests, "warmup": warmup, "cold": cold, "poll_ms": 5},
        "steps": [comparison.as_dict() for comparison in comparisons],
        "breakdown_ms": {
            path: {name: {"median": median(v), "p95": p95(v)} for name, v in named.items() if v}
            for path, named in marks.items()
        },
        "invite_join_race_retries": {"guestgate": worker_races, "floor": floor_races},
        "samples_ms": dict(totals),
    }
    write_json(json_path, report)
    return outcome


def _wait_for_spares(stack: Stack) -> None:
    """Until GuestGate's spare accounts are topped up again (accounts/spares.py: a refill runs
    a second after a guest took one): that background work must not land in the next path's
    time, which may be the floor's."""
    wanted = settings.GUEST_SPARE_ACCOUNTS

    def topped_up() -> bool:
        if (exited := stack.exited()) is not None:
            raise BenchError(exited)
        return spares_ready() >= wanted and not cache.get(SPARES_REFILL_QUEUED)

    if wanted > 0:
        wait_until(topped_up, what="the spare accounts", timeout=30, every=0.05)


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path}")


def fresh_database() -> None:
    """An empty database each run: a new SQLite file in the benchmark's own state directory,
    or (DATABASE_URL) every table emptied. Rows of an earlier run name accounts of a
    homeserver pair that may have been reset since (a spare account would fail its guest)."""
    name = Path(str(connection.settings_dict["NAME"]))
    if connection.vendor == "sqlite" and name.resolve().is_relative_to(settings.VAR_DIR):
        connection.close()
        for stale in (name, Path(f"{name}-journal"), Path(f"{name}-wal"), Path(f"{name}-shm")):
            stale.unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    if connection.vendor != "sqlite":
        call_command("flush", interactive=False, verbosity=0)
        default_policy()  # made again (the migration made the first)


def _progress(
    number: int,
    total: int,
    counted: bool,
    results: Mapping[str, tuple[measure.Timing, measure.Timing]],
) -> None:
    gg_a, gg_b = results["guestgate"]
    floor_a, floor_b = results["floor"]
    print(
        f"guest {number:3}/{total} {'' if counted else '(warm-up)':9}"
        f"  A: GuestGate {gg_a.total_ms:5.0f}  floor {floor_a.total_ms:5.0f} ms"
        f"   B: GuestGate {gg_b.total_ms:5.0f}  floor {floor_b.total_ms:5.0f} ms",
        flush=True,
    )


def _without_register_and_login(totals: list[float], marks: Marks) -> list[float]:
    """The floor's guests less their register and login calls: what the bare calls take for
    a guest who got a spare account (accounts/spares.py), i.e. display name + knock + until
    main shows it. GuestGate's own cost on top of the calls it makes."""
    registered = marks["registered (inhibit_login)"]
    named, logged_in = marks["display name set"], marks["logged in (device)"]
    return [
        total - register - (login_done - name_done)
        for total, register, name_done, login_done in zip(
            totals, registered, named, logged_in, strict=True
        )
    ]


def _derive(marks: Marks, later: str, earlier: str) -> None:
    """Add the per-guest time between two marks (where both were seen) as its own row."""
    pairs = zip(marks.get(later, []), marks.get(earlier, []), strict=False)
    if len(marks.get(later, [])) == len(marks.get(earlier, [])):
        marks[f"  delta {earlier} -> {later}"] = [b - a for b, a in pairs]


def environment_now() -> dict[str, Any]:
    """Where the benchmarks run: database, broker, homeservers, machine, load."""
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        db = f"SQLite ({database['NAME']})"
    elif connection.vendor == "postgresql":
        db = f"PostgreSQL ({database['HOST']}:{database['PORT']}/{database['NAME']})"
    else:
        db = connection.vendor
    db += ", from DATABASE_URL" if os.environ.get("DATABASE_URL") else ", the default"
    broker_url = str(settings.CELERY_BROKER_URL)
    if broker_url.startswith("filesystem://"):
        interval = celery_app.conf.broker_transport_options.get("polling_interval")
        broker = f"embedded (kombu filesystem transport, polling_interval {interval} s)"
    else:
        broker = f"{maybe_sanitize_url(broker_url)} (CELERY_BROKER_URL)"
    return {
        "code": _code_version(),
        "database": db,
        "broker": broker,
        "homeservers": f"Synapse {metadata.version('matrix-synapse')} pair on loopback, SQLite, "
        f"ports {os.environ.get('GUESTGATE_LOCAL_PORT_BASE')}+",
        "GuestGate": f"gunicorn ({processes.GUNICORN_CONFIG}, {WEB_WORKERS} workers x "
        f"{gunicorn_config.threads} threads) + celery worker --pool threads "
        f"--concurrency {WORKER_CONCURRENCY}",
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()} ({sys.platform})",
        "load average at the start": load_average(),
    }


def _code_version() -> str:
    """The commit measured, and whether the working tree had changes (others' work too)."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return described.stdout.strip()


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def quiet_logging() -> None:
    """Keep this process's informational log lines (e.g. each join retry) off the table."""
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("kombu").setLevel(logging.ERROR)  # "No hostname" of the file broker
