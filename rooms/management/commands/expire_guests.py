from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.expiry import accounts_claim_due
from rooms.expiry import LEFT_CALL, accounts_expire_batch


class Command(BaseCommand):
    help = "Expire every due guest account now, in this process (the worker does it each minute)."

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        while batches := accounts_claim_due(rules=[LEFT_CALL]):
            for batch in batches:
                accounts_expire_batch(batch)
                done += len(batch)
        self.stdout.write(f"Expired {done} guest account{'s' if done != 1 else ''}.")
