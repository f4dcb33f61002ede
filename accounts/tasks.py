"""Celery tasks of guest accounts: spares, the expiry sweep, batches of expiries, reconciliation,
purge."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from accounts.expiry import (
    accounts_claim_due,
    accounts_expire_batch,
    guest_accounts_reconcile,
    records_purge,
)
from accounts.spares import spare_accounts_refill
from guestgate.retrying import run_retrying

logger = logging.getLogger(__name__)


@shared_task
def sweep_expired_accounts() -> int:
    """Every minute: claim due accounts and hand them to workers in batches."""
    batches = accounts_claim_due()
    for batch in batches:
        expire_accounts.delay(batch)
    return sum(len(batch) for batch in batches)


@shared_task(bind=True, max_retries=10)
def expire_accounts(self: Task, account_ids: list[int]) -> None:
    """Expire a batch, one account after another: one batch at a time per worker thread keeps
    the load on the homeserver bounded. A retry redoes only what is not recorded as done."""

    run_retrying(
        self,
        lambda: accounts_expire_batch(account_ids),
        # Given up: the accounts stay claimed; the sweep claims them again later.
        on_give_up=lambda error: logger.error(
            "expiry of %d accounts postponed: %s", len(account_ids), error
        ),
    )


@shared_task(bind=True, max_retries=5)
def refill_spare_accounts(self: Task, check_ready: bool = True) -> None:
    """After a guest took a spare, and every minute: top the spare accounts up."""
    run_retrying(
        self,
        lambda: spare_accounts_refill(check_ready=check_ready),
        # Given up: guests get new accounts meanwhile; the next minute's refill tries again.
        on_give_up=lambda error: logger.warning("spare accounts not refilled: %s", error),
    )


@shared_task
def reconcile_guest_accounts() -> dict[str, int]:
    result = guest_accounts_reconcile()
    return {
        "listed": result.listed,
        "deactivated": len(result.deactivated_unknown),
        "closed": len(result.closed_records),
    }


@shared_task
def purge_records() -> dict[str, int]:
    result = records_purge()
    return {
        "join_requests": result.join_requests,
        "audit_entries": result.audit_entries,
        "accounts": result.accounts,
    }
