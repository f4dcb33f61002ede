from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.expiry import guest_accounts_reconcile


class Command(BaseCommand):
    help = "Compare guest accounts on the guest homeserver with GuestGate's records; clean up."

    def handle(self, *args: Any, **options: Any) -> None:
        result = guest_accounts_reconcile()
        self.stdout.write(
            f"Accounts in GuestGate's namespace on the guest homeserver: {result.listed}"
        )
        for user_id in result.deactivated_unknown:
            self.stdout.write(f"  deactivated (unknown to GuestGate): {user_id}")
        for user_id in result.closed_records:
            self.stdout.write(f"  closed record (account gone from the server): {user_id}")
        if not result.deactivated_unknown and not result.closed_records:
            self.stdout.write("Nothing to do: both sides agree.")
