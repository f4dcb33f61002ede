"""``manage.py homeservers up|down|status``: the local Synapse pair for make run and tests."""

from __future__ import annotations

import os
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devtools.localpair import PROFILES, LocalPair, local_pair
from devtools.localpair.process import LocalPairError, PairStatus, down, status, up


class Command(BaseCommand):
    help = "Start, stop or show the local pair of Synapse homeservers (guest and main)."
    # The homeserver settings may well be unset here: this command is what provides them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["up", "down", "status"])
        parser.add_argument(
            "--profile",
            choices=sorted(PROFILES),
            default=os.environ.get("GUESTGATE_LOCAL_PAIR") or "dev",
            help="which pair: dev (make run) or test (the test suite); "
            "default GUESTGATE_LOCAL_PAIR or dev",
        )
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="seconds to wait for readiness"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pair = local_pair(options["profile"], settings.VAR_DIR / "homeservers")
        try:
            if options["action"] == "up":
                self._up(pair, options["timeout"])
            elif options["action"] == "down":
                self._down(pair, options["timeout"])
            else:
                self.stdout.write(status(pair).to_json())
        except LocalPairError as error:
            raise CommandError(str(error)) from error

    def _up(self, pair: LocalPair, timeout: float) -> None:
        started_at = time.monotonic()
        result = up(pair, timeout=timeout)
        elapsed = time.monotonic() - started_at
        if result.changed:
            roles = ", ".join(role for role, _ in result.changed)
            headline = f"Started {roles} of the {pair.profile} pair; ready in {elapsed:.1f} s."
        else:
            headline = f"The {pair.profile} pair was already running and ready."
        self.stdout.write(self.style.SUCCESS(headline))
        self._describe(result)

    def _down(self, pair: LocalPair, timeout: float) -> None:
        result = down(pair, timeout=timeout)
        if result.changed:
            stopped = ", ".join(f"{role} (pid {pid})" for role, pid in result.changed)
            self.stdout.write(f"Stopped {stopped} of the {pair.profile} pair.")
        else:
            self.stdout.write(f"Nothing of the {pair.profile} pair was running.")

    def _describe(self, result: PairStatus) -> None:
        for server in result.servers:
            self.stdout.write(
                f"  {server.role:<5} {server.server_name}  client {server.client_url}  "
                f"federation {server.federation_url}  pid {server.pid}\n"
                f"        log {server.log_path}"
            )
