"""GuestGate's benchmarks against the bare homeserver calls each step needs (the floor).

    make bench                                        # all four, default sizes
    make bench BENCH_ARGS="--only burst --burst-guests 500"
    make bench BENCH_ARGS="--only expiry --expiry-accounts 10000"
    make bench BENCH_ARGS="--only guest_flow --guests 40 --cold"
    python -m bench --only call_view                  # not in the default four (Chromium)

The four benchmarks of DESIGN.md's "Performance targets", one after another on one stack:

  guest_flow  one guest at a time: name -> knock on the dashboard, approve -> joined and told
              (bench/runner.py, bench/measure.py)
  burst       N guests submit the join form at once, each from its own address through a
              reverse proxy GuestGate trusts; all approved at once (bench/burst.py)
  expiry      the expiry sweep of M due accounts against bare deactivations (bench/expiry.py)
  lobby       what K waiting guests' long polls cost the web server (bench/lobby_load.py)

and, when asked for, call_view: "let in" -> Element Call's call view on the guest's screen,
preloaded and not, and what the lobby downloads (bench/call_view.py; needs Chromium and the
built front end).

The run uses its own ports and state directory (``var/bench-state``, ports 48xxx), so it never
meets ``make run`` or the tests; it starts the homeserver pair if needed, GuestGate's web server
and a Celery worker, and stops all it started. A fresh SQLite database every run. A MISS is
printed, not failed: the exit status is non-zero only if a benchmark could not run. Results:
var/bench/*.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from bench.proxy import PROXY_SOURCE

if TYPE_CHECKING:
    from bench.report import Outcome
    from bench.stack import Stack
    from matrix import MatrixClient

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ("guest_flow", "burst", "expiry", "lobby", "call_view")
DEFAULT = ("guest_flow", "burst", "expiry", "lobby")
_ALIASES = {"flow": "guest_flow", "guest-flow": "guest_flow", "lobby_load": "lobby"}
_TITLES = {
    "guest_flow": "guest flow, one guest at a time",
    "burst": "burst of guests at one room",
    "expiry": "expiry sweep",
    "lobby": "lobby load (waiting guests' long polls)",
    "call_view": "let in -> the call on the guest's screen",
}


def benchmark_profile() -> None:
    """Own ports and state directory (before Django starts; GuestGate's processes inherit the
    environment). Every benchmark guest comes from a loopback address of its own, the burst's
    through the benchmark's reverse proxy on 127.0.0.1, which GuestGate trusts (bench/proxy.py):
    the limit per client address is as deployed; those per link and per room are generous."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("GUESTGATE_VAR_DIR", str(REPO / "var" / "bench-state"))
    os.environ.setdefault("GUESTGATE_LOCAL_PORT_BASE", "26000")
    os.environ.setdefault("GUESTGATE_LOCAL_APPSERVICE_PORT", "26499")
    os.environ.setdefault("GUESTGATE_TRUSTED_PROXIES", PROXY_SOURCE)
    # guestgate/settings.py's default, which tests.settings would otherwise raise.
    os.environ.setdefault("GUESTGATE_JOIN_RATE_PER_IP", "10")
    for limit in ("PER_LINK", "PER_ROOM"):
        os.environ.setdefault(f"GUESTGATE_JOIN_RATE_{limit}", "1000000")
    # Spare accounts as deployed (guestgate/settings.py's default; the tests turn them off).
    os.environ.setdefault("GUESTGATE_SPARE_ACCOUNTS", "5")


def _only(value: str) -> list[str]:
    names = [_ALIASES.get(name, name) for name in value.replace(" ", "").split(",") if name]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def parse(argv: Sequence[str] | None, *, default_only: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--only",
        type=_only,
        action="extend",
        help=f"comma-separated benchmarks to run (default: {','.join(default_only)})",
    )
    flow = parser.add_argument_group("guest_flow")
    flow.add_argument("--guests", type=int, default=20, help="guests measured per path")
    flow.add_argument("--warmup", type=int, default=3, help="guests first, not counted")
    flow.add_argument(
        "--cold",
        action="store_true",
        help="each guest leaves after its turn, so the guest homeserver is never in the room "
        "(every knock and join is the 'cold' kind of MATRIX-LAB P5)",
    )
    flow.add_argument(
        "--json", type=Path, help="where the guest flow's results go (default: in --json-dir)"
    )
    burst = parser.add_argument_group("burst")
    burst.add_argument("--burst-guests", type=int, default=50, help="guests arriving at once")
    burst.add_argument(
        "--burst-parallel-invites",
        type=int,
        default=8,
        help="a reference floor whose bot invites from this many threads (0: none)",
    )
    expiry = parser.add_argument_group("expiry")
    expiry.add_argument(
        "--expiry-accounts", type=int, default=1000, help="due accounts GuestGate expires"
    )
    expiry.add_argument(
        "--sweep-every",
        type=float,
        help="seconds between sweeps (default: celery beat's schedule); 0: sweep again as soon "
        "as the previous sweep's accounts are expired",
    )
    lobby = parser.add_argument_group("lobby")
    lobby.add_argument("--lobby-guests", type=int, default=100, help="waiting guests polling")
    call = parser.add_argument_group("call_view")
    call.add_argument("--call-guests", type=int, default=20, help="guests measured per way")
    call.add_argument("--call-warmup", type=int, default=1, help="guests first, not counted")
    lobby.add_argument(
        "--lobby-seconds", type=float, default=20.0, help="how long the load is measured"
    )
    parser.add_argument(
        "--json-dir", type=Path, default=REPO / "var" / "bench", help="where results go"
    )
    args = parser.parse_args(argv)
    args.only = list(dict.fromkeys(args.only or default_only))
    if args.guests < 1 or args.warmup < 0:
        parser.error("--guests must be at least 1 and --warmup at least 0")
    if min(args.burst_guests, args.expiry_accounts, args.lobby_guests) < 1:
        parser.error("--burst-guests, --expiry-accounts and --lobby-guests must be at least 1")
    if args.sweep_every is not None and args.sweep_every < 0:
        parser.error("--sweep-every must not be negative")
    args.json = args.json or args.json_dir / "guest_flow.json"
    return args


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up of everything started


Runner = Callable[["Stack", "MatrixClient", "MatrixClient", argparse.Namespace], "Outcome"]


def _runners() -> dict[str, Runner]:
    from bench import burst, call_view, expiry, lobby_load, runner

    def guest_flow(
        stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, args: argparse.Namespace
    ) -> Outcome:
        return runner.run(
            stack,
            guest_appservice,
            bot,
            guests=args.guests,
            warmup=args.warmup,
            cold=args.cold,
            json_path=args.json,
        )

    return {
        "guest_flow": guest_flow,
        "burst": burst.run,
        "expiry": expiry.run,
        "lobby": lobby_load.run,
        "call_view": call_view.run,
    }


def main(argv: Sequence[str] | None = None, *, default_only: Sequence[str] = DEFAULT) -> int:
    args = parse(argv, default_only=default_only)
    benchmark_profile()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    import django

    django.setup()
    from bench.stack import BenchError  # needs the app registry

    try:
        return _run_all(args)
    except BenchError as error:
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        print(f"\nthe benchmark could not finish: {error}{cause}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; everything the benchmark started was stopped", file=sys.stderr)
        return 130


def _run_all(args: argparse.Namespace) -> int:
    from bench.report import verdict_table
    from bench.runner import environment_now, fresh_database, quiet_logging
    from bench.stack import BenchError, running_stack
    from guestgate import homeservers

    fresh_database()
    quiet_logging()
    runners = _runners()
    print(f"GuestGate benchmarks: {', '.join(args.only)}")
    for key, value in environment_now().items():
        print(f"  {key}: {value}")
    outcomes: list[Outcome] = []
    could_not_run: list[str] = []
    with (
        running_stack() as stack,
        homeservers.guest_appservice() as guest_appservice,
        homeservers.main_bot() as bot,
    ):
        print(f"  homeserver pair: {'started' if stack.pair_started else 'already running'}")
        for name in args.only:
            print(f"\n=== {name}: {_TITLES[name]} ===", flush=True)
            started = time.monotonic()
            try:
                outcome = runners[name](stack, guest_appservice, bot, args)
            except BenchError as error:
                if (exited := stack.exited()) is not None:
                    raise BenchError(f"{name}: {exited}") from error
                cause = f" ({error.__cause__!r})" if error.__cause__ else ""
                print(f"\n*** {name} could not finish: {error}{cause} ***", flush=True)
                could_not_run.append(name)
                continue
            outcomes.append(outcome)
            print(f"\n--- {name}: results ({time.monotonic() - started:.0f} s) ---\n")
            print("\n\n".join(outcome.tables), flush=True)
    if outcomes:
        print(f"\n=== verdicts (load average now {os.getloadavg()[0]:.2f}) ===\n")
        print(verdict_table(outcomes))
    if could_not_run:
        print(f"\ncould not finish: {', '.join(could_not_run)}", file=sys.stderr)
        return 1
    return 0
