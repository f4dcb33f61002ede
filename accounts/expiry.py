"""Guest accounts end by their retention policy: claiming due accounts, deactivating them,
reconciliation with the guest homeserver, the purge of old account records.

The database is the record of work: a sweep claims due accounts with a conditional UPDATE
(safe with several workers and beats), and each claimed account is expired by idempotent
steps whose completion is recorded (record, act, record). Claimed accounts whose expiry did
not finish (a worker killed, a homeserver down) are claimed again after a while. What an
expiry does in call rooms (closing lobbies, kicking a stale knock) is rooms' part:
``rooms.expiry`` runs the sweep and calls ``guest_account_deactivate`` last.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import LIVE_OR_FAILED, accounts_due
from accounts.services import guest_account_ended, move_guest_accounts
from guestgate import homeservers
from matrix import Forbidden, MatrixClient, list_users

logger = logging.getLogger(__name__)

Status = GuestAccount.Status


@dataclass(frozen=True)
class DueRule:
    """Another reason for a policy's accounts to end, which needs what ``accounts`` does not
    know (``rooms.expiry`` passes "left the call"): the live accounts due by it, and the
    ``expiry_reason`` recorded for them."""

    reason: str
    due: Callable[[RetentionPolicy, datetime], QuerySet[GuestAccount]]


def accounts_claim_due(
    *, now: datetime | None = None, limit: int | None = None, rules: Sequence[DueRule] = ()
) -> list[list[int]]:
    """Claim up to ``limit`` due accounts (GUESTGATE_EXPIRY_SWEEP_LIMIT) by their policy and
    by ``rules``, and stuck claims; batches of ids to expire. The limit is high so that a
    backlog is cleared in one sweep, not one small slice a minute."""
    now = now or timezone.now()
    limit = settings.EXPIRY_SWEEP_LIMIT if limit is None else limit
    claim = uuid.uuid4().hex
    remaining = limit
    for policy in RetentionPolicy.objects.all():
        ids = list(accounts_due(policy, now).values_list("pk", flat=True)[:remaining])
        if ids:
            remaining -= move_guest_accounts(
                ids,
                from_=LIVE_OR_FAILED,
                to=Status.EXPIRING,
                expiring_since=now,
                expiry_claim=claim,
            )
        for rule in rules:
            ids = list(rule.due(policy, now).values_list("pk", flat=True)[: max(remaining, 0)])
            if ids:
                remaining -= move_guest_accounts(
                    ids,
                    from_=LIVE_OR_FAILED,
                    to=Status.EXPIRING,
                    expiring_since=now,
                    expiry_claim=claim,
                    expiry_reason=rule.reason,
                )
    move_guest_accounts(
        GuestAccount.objects.filter(_stuck(now)),
        from_=[Status.EXPIRING],
        to=None,
        expiring_since=now,
        expiry_started_at=None,
        expiry_claim=claim,
        expiry_holder="",
        expiry_lease_until=None,
    )
    claimed = GuestAccount.objects.filter(expiry_claim=claim, status=Status.EXPIRING)
    return list(_batches(claimed.order_by("pk").values_list("pk", flat=True).iterator()))


#: A claimed batch that never started: its message was lost (Redis hands an unacknowledged
#: message out again after its visibility timeout, 1 h; guestgate/celery.py).
UNSTARTED_CLAIM_SECONDS = 3600


def expiry_lease() -> timedelta:
    """How long a running batch holds its accounts after its last step began: longer than one
    account's step can take (each homeserver call with its retries), so that a live batch never
    loses them; a killed batch's accounts are claimed again this long after its last step."""
    one_call = settings.MATRIX_TIMEOUT_SECONDS * (settings.MATRIX_RETRIES + 1)
    return timedelta(seconds=max(15.0, one_call))


def _stuck(now: datetime) -> Q:
    """Claimed accounts to claim again: the batch holding them stopped renewing its lease (a
    worker killed), a batch waiting to retry let it run out (EXPIRY_STUCK_AFTER_SECONDS, a
    homeserver down), or their batch never began within UNSTARTED_CLAIM_SECONDS. A batch still
    waiting in the queue behind a large sweep is not stuck: claiming it again would have its
    accounts expired twice."""
    claimed_long_ago = now - timedelta(seconds=UNSTARTED_CLAIM_SECONDS)
    return Q(expiry_lease_until__lt=now) | Q(
        expiry_started_at__isnull=True, expiring_since__lt=claimed_long_ago
    )


def accounts_expiry_started(
    account_ids: list[int], *, holder: str, now: datetime | None = None
) -> list[int]:
    """A batch begins (or begins again after a retry): it takes those of its accounts that no
    other live batch holds, for ``expiry_lease()``; the ids it holds. ``holder``: the batch's
    task id, the same across its retries."""
    now = now or timezone.now()
    free = (
        Q(expiry_holder=holder) | Q(expiry_lease_until__isnull=True) | Q(expiry_lease_until__lt=now)
    )
    move_guest_accounts(
        GuestAccount.objects.filter(free, pk__in=account_ids),
        from_=[Status.EXPIRING],
        to=None,
        expiry_started_at=now,
        expiry_holder=holder,
        expiry_lease_until=now + expiry_lease(),
    )
    return list(
        GuestAccount.objects.filter(
            pk__in=account_ids, status=Status.EXPIRING, expiry_holder=holder
        ).values_list("pk", flat=True)
    )


def account_expiry_step(account: GuestAccount, *, holder: str) -> bool:
    """Before each account's step: renew the lease of every account ``holder`` still holds
    (one UPDATE); whether it still holds ``account`` (else another batch took it over after
    the lease ran out, and this batch must leave it alone)."""
    now = timezone.now()
    GuestAccount.objects.filter(expiry_holder=holder, status=Status.EXPIRING).update(
        expiry_lease_until=now + expiry_lease()
    )
    return GuestAccount.objects.filter(
        pk=account.pk, expiry_holder=holder, status=Status.EXPIRING
    ).exists()


def accounts_expiry_waiting(holder: str, *, now: datetime | None = None) -> None:
    """The batch waits to retry (a homeserver down): it keeps its accounts for
    EXPIRY_STUCK_AFTER_SECONDS, so that the sweeps do not hand them to ever more batches."""
    now = now or timezone.now()
    GuestAccount.objects.filter(expiry_holder=holder, status=Status.EXPIRING).update(
        expiry_lease_until=now + timedelta(seconds=settings.EXPIRY_STUCK_AFTER_SECONDS)
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


def guest_account_deactivate(account: GuestAccount, appservice: MatrixClient) -> None:
    """End a claimed account on the guest homeserver (erase per policy, which also logs out
    every device) and record it. Skipped when already done; a retry after a lost write
    deactivates again, which is idempotent. ``appservice``: GuestGate's appservice client on
    the guest homeserver."""
    if account.status != Status.EXPIRING:
        return
    deactivated_at = account.deactivated_at
    if deactivated_at is None and account.registered_at is not None:
        try:
            appservice.as_user(account.user_id).deactivate(erase=account.policy.erase_on_expiry)
        except Forbidden:
            # "Application service has not registered this user": nothing to deactivate.
            logger.info("guest %s is not on the guest homeserver", account.user_id)
        deactivated_at = timezone.now()
    guest_account_ended(
        account,
        from_=[Status.EXPIRING],
        reason=_reason(account, timezone.now()),
        deactivated_at=deactivated_at,
    )


def _reason(account: GuestAccount, now: datetime) -> str:
    if account.expiry_reason:  # claimed by a DueRule, which said why
        return account.expiry_reason
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
        if guest_account_ended(
            account, from_=[account.status], reason="gone from server", deactivated_at=now
        ):
            closed.append(account.user_id)
    return Reconciliation(listed=listed, deactivated_unknown=unknown, closed_records=closed)


def guest_accounts_purge(policy: RetentionPolicy, *, before: datetime) -> int:
    """Delete the records of ``policy``'s accounts that expired before ``before``."""
    return GuestAccount.objects.filter(
        policy=policy, status=Status.EXPIRED, expired_at__lt=before
    ).delete()[0]
