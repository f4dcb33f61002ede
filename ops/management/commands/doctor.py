"""``manage.py doctor``: check a live deployment end to end, one line per check."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ops.doctor import run_all

_MARK = {True: "✓", False: "✗", None: "\u2013"}  # en dash: not checked
_WARNING = "!"  # passes, with a fix worth making


class Command(BaseCommand):
    help = (
        "Check that this deployment works: settings, database, broker, both homeservers, "
        "GuestGate's appservice on each, main's pushes to GuestGate, federation, call rooms. "
        "Exits with 1 if anything fails."
    )
    # The doctor reports broken settings itself, with the other checks, instead of stopping.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        results = run_all()
        width = max(len(label) for label, _ in results)
        for label, outcome in results:
            warning = outcome.ok is True and bool(outcome.fix_hint)
            mark = _WARNING if warning else _MARK[outcome.ok]
            line = f"{mark} {label:<{width}}  {outcome.message}"
            if outcome.ok is False:
                self.stdout.write(self.style.ERROR(line))
            else:
                self.stdout.write(self.style.WARNING(line) if warning else line)
            if outcome.fix_hint and (outcome.ok is False or warning):
                self.stdout.write(f"  {'':<{width}}  fix: {outcome.fix_hint}")
        failures = sum(1 for _, outcome in results if outcome.ok is False)
        unchecked = sum(1 for _, outcome in results if outcome.ok is None)
        if failures:
            raise CommandError(f"{failures} check(s) failed; the fix lines say what to do.")
        note = f" ({unchecked} could not be checked)" if unchecked else ""
        self.stdout.write(self.style.SUCCESS(f"Everything GuestGate needs works{note}."))
