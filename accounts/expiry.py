"""Guest accounts end by their retention policy: the sweep, reconciliation, the purge.

The database is the record of work: a sweep claims due accounts with a conditional UPDATE
(safe with several workers and beats), and each claimed account is expired by idempotent
steps whose completion is recorded (record, act, record). Claimed accounts whose expiry did
not finish (a worker killed, a homeserver down) are claimed again after a while.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from guestgate import homeservers
from matrix import Forbidden, MatrixClient, list_users

logger = logging.getLogger(__name__)

Status = GuestAccount.Status
_LIVE = (Status.PENDING, Status.ACTIVE, Status.FAILED)


def _due(policy: RetentionPolicy, now: datetime) -> QuerySet[GuestAccount]:
    """This policy's live accounts that are past their lifetime or idle for too long."""
    # Valid at the limit itself, due one moment after it.
    due = Q(created_at__lt=now - policy.account_lifetime)
    if policy.idle_timeout is not None:
        due |= Q(last_seen_at__lt=now - policy.idle_timeout)
    return GuestAccount.objects.filter(due, policy=policy, status__in=_LIVE)


def accounts_due_count(policy: RetentionPolicy, now: datetime | None = None) -> int:
    return _due(policy, now or timezone.now()).count()


def accounts_claim_due(*, now: datetime | None = None, limit: int | None = None) -> list[list[int]]:
    """Claim up to ``limit`` due accounts (GUESTGATE_EXPIRY_SWEEP_LIMIT), and stuck claims;
    batches of ids to expire. A cap of 1000 a minute made 10 000 due accounts take ten
    sweeps (make bench: 18 accounts/s against 62 for bare deactivations)."""
    now = now or timezone.now()
    limit = settings.EXPIRY_SWEEP_LIMIT if limit is None else limit
    claim = uuid.uuid4().hex
    remaining = limit
    for policy in RetentionPolicy.objects.all():
        ids = list(_due(policy, now).values_list("pk", flat=True)[:remaining])
        if ids:
            remaining -= GuestAccount.objects.filter(pk__in=ids, status__in=_LIVE).update(
                status=Status.EXPIRING, expiring_since=now, expiry_claim=claim
            )
    GuestAccount.objects.filter(_stuck(now), status=Status.EXPIRING).update(
        expiring_since=now, expiry_started_at=None, expiry_claim=claim
    )
    claimed = GuestAccount.objects.filter(expiry_claim=claim, status=Status.EXPIRING)
    return list(_batches(claimed.order_by("pk").values_list("pk", flat=True).iterator()))


#: A claimed batch that never started: its message was lost (Redis hands an unacknowledged
#: message out again after its visibility timeout, 1 h; guestgate/celery.py).
UNSTARTED_CLAIM_SECONDS = 3600


def _stuck(now: datetime) -> Q:
    """Claimed accounts to claim again: their batch began but did not finish in
    EXPIRY_STUCK_AFTER_SECONDS (a worker killed, a homeserver down), or it never began within
    UNSTARTED_CLAIM_SECONDS. A batch still waiting in the queue is not stuck: with 25 000 due
    accounts the last batches wait longer than 5 minutes, and claiming them again had them
    expired twice (make bench: 16 741 claims for 10 000 accounts at a 60 s threshold)."""
    started_long_ago = now - timedelta(seconds=settings.EXPIRY_STUCK_AFTER_SECONDS)
    claimed_long_ago = now - timedelta(seconds=UNSTARTED_CLAIM_SECONDS)
    return Q(expiry_started_at__lt=started_long_ago) | Q(
        expiry_started_at__isnull=True, expiring_since__lt=claimed_long_ago
    )


def accounts_expiry_started(account_ids: list[int], *, now: datetime | None = None) -> None:
    """A batch begins (or begins again after a retry): its accounts are not stuck for now."""
    GuestAccount.objects.filter(pk__in=account_ids, status=Status.EXPIRING).update(
        expiry_started_at=now or timezone.now()
    )


def _batches(ids: Iterator[int]) -> Iterator[list[int]]:
    batch: list[int] = []
    for pk in ids:
        batch.append(pk)
        if len(batch) == settings.EXPIRY_BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def accounts_expire_batch(account_ids: list[int]) -> None:
    """Expire a claimed batch, one account after another, over one client and connection to
    the guest homeserver (not one per account)."""
    from rooms.models import JoinRequest  # rooms depends on accounts

    accounts_expiry_started(account_ids)
    accounts = GuestAccount.objects.select_related("policy").filter(
        pk__in=account_ids, status=Status.EXPIRING
    )
    # One query for the batch: an account that never asked to join (a spare, a guest whose
    # provisioning failed) has no request to close and no knock to kick.
    asked = set(
        JoinRequest.objects.filter(guest_id__in=account_ids).values_list("guest_id", flat=True)
    )
    with homeservers.guest_appservice() as appservice:
        for account in accounts.iterator():
            guest_account_expire(account, appservice, join_requests=account.pk in asked)


def guest_account_expire(
    account: GuestAccount, appservice: MatrixClient, *, join_requests: bool = True
) -> None:
    """End a claimed account: close its requests (lobbies say "expired"), kick a stale knock
    on main (MATRIX-LAB P7), deactivate it on the guest homeserver (erase per policy, which
    also logs out every device), record it. Each step is skipped when already done.
    ``appservice``: GuestGate's appservice client on the guest homeserver; ``join_requests``:
    False when the caller knows the account has none."""
    if account.status != Status.EXPIRING:
        return
    if join_requests:
        from rooms.join_requests import join_requests_expire_for  # rooms depends on accounts

        join_requests_expire_for(account)
    deactivated_at = account.deactivated_at
    if deactivated_at is None and account.registered_at is not None:
        try:
            appservice.as_user(account.user_id).deactivate(erase=account.policy.erase_on_expiry)
        except Forbidden:
            # "Application service has not registered this user": nothing to deactivate.
            logger.info("guest %s is not on the guest homeserver", account.user_id)
        deactivated_at = timezone.now()
    # One write records both (a retry after a lost write deactivates again: idempotent).
    now = timezone.now()
    GuestAccount.objects.filter(pk=account.pk, status=Status.EXPIRING).update(
        status=Status.EXPIRED,
        expired_at=now,
        deactivated_at=deactivated_at,
        access_token_encrypted="",
        expiry_reason=_reason(account, now),
    )


def _reason(account: GuestAccount, now: datetime) -> str:
    if now - account.created_at > account.policy.account_lifetime:
        return "lifetime"
    return "idle" if account.policy.idle_timeout is not None else "expired"


@dataclass(frozen=True)
class Reconciliation:
    listed: int
    deactivated_unknown: list[str]
    closed_records: list[str]


def guest_accounts_reconcile(*, now: datetime | None = None) -> Reconciliation:
    """Compare the guest homeserver's accounts in GuestGate's namespace with our records.

    Accounts unknown to GuestGate (older than the grace period) are deactivated with erase;
    records whose account is gone or deactivated are closed. Needs GUEST_ADMIN_TOKEN (the
    Synapse admin API lists accounts; the Matrix spec has no such call).
    """
    now = now or timezone.now()
    token = homeservers.guest_admin_token()
    grace_ms = (now.timestamp() - settings.RECONCILE_GRACE_SECONDS) * 1000
    listed = 0
    alive_on_server: set[str] = set()
    unknown: list[str] = []
    suffix = f":{settings.GUEST_HS_SERVER_NAME}"
    for user in list_users(
        settings.GUEST_HS_URL, access_token=token, name_contains=settings.GUEST_USER_PREFIX
    ):
        if not (
            user.user_id.startswith(f"@{settings.GUEST_USER_PREFIX}")
            and user.user_id.endswith(suffix)
        ):
            continue
        listed += 1
        if user.deactivated:
            continue
        alive_on_server.add(user.user_id)
        if (
            user.created_ms < grace_ms
            and not GuestAccount.objects.filter(user_id=user.user_id)
            .exclude(status=Status.EXPIRED)
            .exists()
        ):
            unknown.append(user.user_id)
    with homeservers.guest_appservice() as appservice:
        for user_id in unknown:
            appservice.as_user(user_id).deactivate(erase=True)
            logger.warning("reconcile: deactivated %s, unknown to GuestGate", user_id)
    closed: list[str] = []
    registered_long_ago = now - timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
    gone = GuestAccount.objects.filter(
        status__in=[Status.ACTIVE, Status.SPARE], registered_at__lt=registered_long_ago
    ).exclude(user_id__in=alive_on_server)
    for account in gone.iterator():
        with transaction.atomic():
            if GuestAccount.objects.filter(pk=account.pk, status=account.status).update(
                status=Status.EXPIRED,
                expired_at=now,
                deactivated_at=now,
                access_token_encrypted="",
                expiry_reason="gone from server",
            ):
                closed.append(account.user_id)
    return Reconciliation(listed=listed, deactivated_unknown=unknown, closed_records=closed)


@dataclass(frozen=True)
class Purge:
    join_requests: int
    audit_entries: int
    accounts: int


def records_purge(*, now: datetime | None = None) -> Purge:
    """Delete GuestGate's own records of people once their policy's record retention is over:
    closed join requests and audit entries per the room's policy, expired accounts per theirs."""
    from rooms.models import AuditEntry, CallRoom, JoinRequest

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
        accounts += GuestAccount.objects.filter(
            policy=policy, status=Status.EXPIRED, expired_at__lt=before
        ).delete()[0]
    return Purge(join_requests=requests, audit_entries=entries, accounts=accounts)
