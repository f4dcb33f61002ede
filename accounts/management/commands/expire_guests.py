from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.expiry import accounts_claim_due, guest_account_expire
from accounts.models import GuestAccount


class Command(BaseCommand):
    help = "Expire every due guest account now, in this process (the worker does it each minute)."

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        while batches := accounts_claim_due():
            for batch in batches:
                for account in GuestAccount.objects.select_related("policy").filter(pk__in=batch):
                    guest_account_expire(account)
                    done += 1
        self.stdout.write(f"Expired {done} guest account{'s' if done != 1 else ''}.")
