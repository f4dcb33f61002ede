"""Spare guest accounts: registered and logged in on the guest homeserver ahead of time.

An arriving guest takes a spare in the transaction that records them (``spare_account_take``),
so the provisioning task only sets the display name and knocks: register and login (two calls
and two records) are off the path from "name typed" to "knock on the moderators' screen". A
task tops the spares up after every take and each minute (``GUESTGATE_SPARE_ACCOUNTS``,
default 5; 0 turns them off). When none is ready, a guest gets a
new account as before, so a burst of guests is never held up by the spares.

A spare is an account like any other (record, act, record; reconciliation knows it), with no
guest: the expiry sweep leaves it alone, and its lifetime and policy start when it is taken.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import spare_accounts_ready, spares_ready
from accounts.services import (
    default_policy,
    guest_account_create,
    guest_account_ended,
    guest_account_register,
    guest_account_token_known,
    move_guest_accounts,
)
from guestgate import homeservers
from guestgate.crypto import token_hash
from guestgate.retrying import run_retrying, task_send
from matrix import MatrixClient

logger = logging.getLogger(__name__)

Status = GuestAccount.Status

#: Spares looked at by one take: concurrent guests may race for the same one.
_TAKE_CANDIDATES = 3
_REFILL_LOCK = "accounts:spares:refill"
_REFILL_LOCK_SECONDS = 120
# A refill already queued: a burst of guests taking (or finding no) spares queues one, not one
# each, ahead of their own provisioning tasks.
REFILL_QUEUED = "accounts:spares:refill-queued"
REFILL_QUEUED_SECONDS = 60
#: A refill waits this long after a take: registering spares while the guest who took one is
#: still being set up would slow that guest's own calls on the guest homeserver.
REFILL_DELAY_SECONDS = 1.0


def spare_account_take(
    *, display_name: str, browser_key: str, policy: RetentionPolicy
) -> GuestAccount | None:
    """A ready spare, now this guest's (call inside the transaction that records them); None
    when no spare is ready. Its lifetime starts now, under ``policy``."""
    if settings.GUEST_SPARE_ACCOUNTS <= 0:
        return None
    now = timezone.now()
    for pk in spare_accounts_ready().order_by("pk").values_list("pk", flat=True)[:_TAKE_CANDIDATES]:
        taken = move_guest_accounts(
            [pk],
            from_=[Status.SPARE],
            to=Status.ACTIVE,
            display_name=display_name,
            browser_key_hash=token_hash(browser_key),
            policy=policy,
            created_at=now,
            last_seen_at=now,
        )
        if taken:
            return GuestAccount.objects.select_related("policy").get(pk=pk)
    return None


def spare_accounts_refill(*, check_ready: bool = True) -> int:
    """Make spares until GUESTGATE_SPARE_ACCOUNTS are ready; how many were made ready.

    One refill at a time (a cache lock); a spare a failed refill left half made is finished
    first, so no account is registered twice or left unknown. ``check_ready``: first close the
    ready spares the server no longer knows (the minute's refill does; the one after a take
    does not, so a burst of guests does not whoami every spare once a second).
    """
    wanted = settings.GUEST_SPARE_ACCOUNTS
    cache.delete(REFILL_QUEUED)  # a take from now on queues the next refill
    if wanted <= 0 or not cache.add(_REFILL_LOCK, 1, timeout=_REFILL_LOCK_SECONDS):
        return 0
    try:
        with homeservers.guest_appservice() as appservice:
            if check_ready:
                _close_spares_gone_from_the_server(appservice)
            unfinished = list(
                GuestAccount.objects.filter(status=Status.SPARE, access_token_encrypted="")
            )
            missing = wanted - spares_ready() - len(unfinished)
            policy = default_policy()
            unfinished += [
                guest_account_create(
                    display_name="", browser_key="", policy=policy, status=Status.SPARE
                )
                for _ in range(max(0, missing))
            ]
            for account in unfinished:
                guest_account_register(appservice, account)
        if unfinished:
            logger.info("spare accounts: %d made ready", len(unfinished))
        return len(unfinished)
    finally:
        cache.delete(_REFILL_LOCK)


def spare_accounts_refill_after_commit() -> None:
    """Queue a refill once this transaction commits (after the tasks it queued before: a
    guest's own provisioning goes first), unless one is queued already."""
    if settings.GUEST_SPARE_ACCOUNTS > 0:
        transaction.on_commit(_refill_soon)


def _close_spares_gone_from_the_server(appservice: MatrixClient) -> None:
    """A ready spare whose token the guest homeserver no longer knows (the server was reset,
    or an admin deactivated it) would cost the guest who takes it a second registration
    (``guest_account_log_in_again``): close it instead. One whoami per spare."""
    for spare in spare_accounts_ready():
        if not guest_account_token_known(appservice, spare):
            logger.warning("spare account %s is gone from the server", spare)
            guest_account_ended(spare, from_=[Status.SPARE], reason="gone from server")


def _refill_soon() -> None:
    if cache.add(REFILL_QUEUED, 1, timeout=REFILL_QUEUED_SECONDS):
        task_send(
            refill_spare_accounts, kwargs={"check_ready": False}, countdown=REFILL_DELAY_SECONDS
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
