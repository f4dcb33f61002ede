"""Benchmark of the guest flow: GuestGate against the bare homeserver calls (the floor).

    make bench                      # embedded broker (or CELERY_BROKER_URL if set)
    make bench BENCH_ARGS="--guests 40 --cold"

Two steps of DESIGN.md's "Performance targets", each over ``--guests`` guests one at a time
(after ``--warmup`` guests not counted), GuestGate and floor interleaved in the same room of
the same homeserver pair:

A. name submitted -> knock visible to the moderator's dashboard. GuestGate: from the POST of
   the join form (real HTTP to GuestGate's web server) until the join request is ``waiting``
   and the knock's membership event is recorded (polled in the database every 5 ms). Floor:
   appservice register (inhibit_login) + display name + appservice login + knock with via,
   until main's member state shows ``knock`` (polled as the bot every 5 ms); the floor up to
   "knock call returned" is shown for reference.
B. moderator approves -> guest joined and told. GuestGate: from ``join_request_approve`` until
   the lobby's long poll says ``joined``. Floor: the bot's invite + the guest's join with via,
   until main's member state shows ``join``.

The run uses its own ports and state directory (``var/bench-state``, ports 48xxx), so it never
meets ``make run`` or the tests; it starts the homeserver pair if needed, GuestGate's web
server and a Celery worker, and stops all it started. A MISS is printed, not failed: the exit
status is non-zero only if the benchmark itself could not run. Results: var/bench/guest_flow.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent


def _benchmark_profile() -> None:
    """Own ports and state directory, unless the caller chose others (before Django starts)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("GUESTGATE_VAR_DIR", str(REPO / "var" / "bench-state"))
    os.environ.setdefault("GUESTGATE_LOCAL_PORT_BASE", "48000")
    os.environ.setdefault("GUESTGATE_LOCAL_APPSERVICE_PORT", "48499")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--guests", type=int, default=20, help="guests measured per path")
    parser.add_argument("--warmup", type=int, default=3, help="guests first, not counted")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="each guest leaves after its turn, so the guest homeserver is never in the room "
        "(every knock and join is the 'cold' kind of MATRIX-LAB P5)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "var" / "bench" / "guest_flow.json",
        help="where the results go",
    )
    args = parser.parse_args(argv)
    if args.guests < 1 or args.warmup < 0:
        parser.error("--guests must be at least 1 and --warmup at least 0")
    return args


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up of everything started


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _benchmark_profile()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    import django

    django.setup()
    from bench.runner import run  # needs the app registry
    from bench.stack import BenchError

    try:
        return run(guests=args.guests, warmup=args.warmup, cold=args.cold, json_path=args.json)
    except BenchError as error:
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        print(f"\nthe benchmark could not finish: {error}{cause}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; everything the benchmark started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
