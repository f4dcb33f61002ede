"""Guest accounts expire by their retention policy: the sweep, and what it does in rooms.

Every minute the sweep claims due accounts (``accounts.expiry``; also, where the policy says
so, those whose guest left the call and did not come back: ``rooms.calls``) and hands them to
workers in batches. Expiring one account: close its open join requests (their lobbies say
"expired"), kick a knock of theirs still pending on main (a deactivated knocker would
otherwise stay in the moderators' queue: MATRIX-LAB P7), then deactivate it on the guest
homeserver. Each step is safe to repeat. Hourly, GuestGate's records of people are purged by
their policy.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from celery import Task, shared_task
from django.db.models import Q
from django.utils import timezone

from accounts.expiry import (
    DueRule,
    account_expiry_step,
    accounts_claim_due,
    accounts_expiry_started,
    accounts_expiry_waiting,
    guest_account_deactivate,
    guest_accounts_purge,
)
from accounts.models import GuestAccount, RetentionPolicy
from guestgate import homeservers
from guestgate.retrying import run_retrying
from rooms.calls import accounts_left_call_due
from rooms.models import AuditEntry, CallRoom, JoinRequest
from rooms.transitions import join_request_expired

logger = logging.getLogger(__name__)


def accounts_expire_batch(account_ids: list[int], *, holder: str | None = None) -> None:
    """Expire a claimed batch, one account after another, over one client and connection to
    the guest homeserver (not one per account). ``holder``: the batch's task id; it holds each
    account by a short lease renewed at every step, so that what a killed batch held is soon
    claimed again, and never expired by two live batches at once."""
    holder = holder or uuid.uuid4().hex
    held = accounts_expiry_started(account_ids, holder=holder)
    accounts = GuestAccount.objects.select_related("policy").filter(
        pk__in=held, status=GuestAccount.Status.EXPIRING
    )
    # One query for the batch: an account that never asked to join (a spare, a guest whose
    # provisioning failed) has no request to close and no knock to kick.
    asked = set(
        JoinRequest.objects.filter(guest_id__in=account_ids).values_list("guest_id", flat=True)
    )
    with homeservers.guest_appservice() as appservice:
        for account in accounts.iterator():
            if not account_expiry_step(account, holder=holder):
                continue  # another batch took it over
            if account.pk in asked:
                join_requests_expire_for(account)
            guest_account_deactivate(account, appservice)


def join_requests_expire_for(account: GuestAccount) -> None:
    """Close an expiring guest's open requests, then kick any knock of theirs still pending on
    main. Safe to repeat: the kick reads main's state first."""
    for join_request in JoinRequest.objects.filter(guest=account, status__in=JoinRequest.OPEN):
        join_request_expired(join_request)
    room_ids = set(
        JoinRequest.objects.filter(guest=account, status=JoinRequest.Status.EXPIRED).values_list(
            "room__room_id", flat=True
        )
    )
    if not room_ids:
        return  # a guest who never got as far as a knock
    with homeservers.main_bot() as bot:
        for room_id in room_ids:
            member = bot.member(room_id, account.user_id)
            if member is not None and member.membership == "knock":
                bot.ensure_kicked(room_id, account.user_id, reason="The guest pass expired.")


@dataclass(frozen=True)
class Purge:
    join_requests: int
    audit_entries: int
    accounts: int


def records_purge(*, now: datetime | None = None) -> Purge:
    """Delete GuestGate's own records of people once their policy's record retention is over:
    closed join requests and audit entries per the room's policy, expired accounts per theirs."""
    now = now or timezone.now()
    requests = entries = accounts = 0
    for policy in RetentionPolicy.objects.all():
        rooms = CallRoom.objects.filter(retention_policy=policy)
        if policy.is_default:
            rooms = CallRoom.objects.filter(
                Q(retention_policy=policy) | Q(retention_policy__isnull=True)
            )
        before = now - policy.record_retention
        requests += (
            JoinRequest.objects.filter(room__in=rooms, updated_at__lt=before)
            .exclude(status__in=JoinRequest.OPEN)
            .delete()[0]
        )
        entries += AuditEntry.objects.filter(room__in=rooms, at__lt=before).delete()[0]
        accounts += guest_accounts_purge(policy, before=before)
    return Purge(join_requests=requests, audit_entries=entries, accounts=accounts)


#: A policy's ``left_call_timeout``: the guest left the call and did not come back in time.
LEFT_CALL = DueRule(reason="left call", due=accounts_left_call_due)


@shared_task
def sweep_expired_accounts() -> int:
    """Every minute: claim due accounts (by their policy, and those whose guest left the call
    long enough ago) and hand them to workers in batches."""
    batches = accounts_claim_due(rules=[LEFT_CALL])
    for batch in batches:
        expire_accounts.delay(batch)
    return sum(len(batch) for batch in batches)


@shared_task(bind=True, max_retries=10)
def expire_accounts(self: Task, account_ids: list[int]) -> None:
    """Expire a batch, one account after another: one batch at a time per worker thread keeps
    the load on the homeserver bounded. A retry redoes only what is not recorded as done."""
    holder = self.request.id or uuid.uuid4().hex  # the same across the task's retries
    run_retrying(
        self,
        lambda: accounts_expire_batch(account_ids, holder=holder),
        on_retry=lambda: accounts_expiry_waiting(holder),
        # Given up: the accounts stay claimed; the sweep claims them again later.
        on_give_up=lambda error: logger.error(
            "expiry of %d accounts postponed: %s", len(account_ids), error
        ),
    )


@shared_task
def purge_records() -> dict[str, int]:
    result = records_purge()
    return {
        "join_requests": result.join_requests,
        "audit_entries": result.audit_entries,
        "accounts": result.accounts,
    }
