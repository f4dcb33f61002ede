"""Benchmark of the guest flow: GuestGate against the bare homeserver calls (the floor).

    python -m bench.guest_flow --guests 40 --cold   # this benchmark alone
    make bench BENCH_ARGS="--only guest_flow --guests 40 --cold"   # the same, from the suite

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

The stack, options and exit status are the suite's (bench/suite.py, ``make bench``, which
runs the other benchmarks too). Results: var/bench/guest_flow.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench import suite


def main(argv: Sequence[str] | None = None) -> int:
    return suite.main(argv, default_only=("guest_flow",))


if __name__ == "__main__":
    sys.exit(main())
