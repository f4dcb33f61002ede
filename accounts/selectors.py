"""Reads of guest accounts: a returning guest's account, the session a guest's client uses,
spares ready, accounts due to expire."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from guestgate.crypto import decrypt, token_hash
from matrix import Session

Status = GuestAccount.Status
#: Accounts the expiry sweep may claim.
LIVE_OR_FAILED = (Status.PENDING, Status.ACTIVE, Status.FAILED)


def guest_account_returning(*, browser_key: str) -> GuestAccount | None:
    """The account this browser had, if it is alive and within its policy's return window."""
    now = timezone.now()
    candidates = (
        GuestAccount.objects.filter(
            browser_key_hash=token_hash(browser_key),
            status__in=[GuestAccount.Status.PENDING, GuestAccount.Status.ACTIVE],
        )
        .select_related("policy")
        .order_by("-created_at")[:5]
    )
    for account in candidates:
        policy = account.policy
        if (
            now - account.created_at <= policy.return_window
            and now - account.created_at < policy.account_lifetime
        ):
            return account
    return None


def guest_account_session(account: GuestAccount) -> Session | None:
    """The session a Matrix client of the guest uses (with the public guest homeserver URL),
    or None once the account is ending: the expiry sweep has claimed it (its token is about
    to stop working) or ended it (its token is forgotten)."""
    if account.status in (Status.EXPIRING, Status.EXPIRED) or not account.access_token_encrypted:
        return None
    return Session(
        homeserver_url=settings.GUEST_HS_PUBLIC_URL,
        user_id=account.user_id,
        device_id=account.device_id,
        access_token=decrypt(account.access_token_encrypted),
    )


def spare_accounts_ready() -> QuerySet[GuestAccount]:
    """Spares registered and logged in, ready for the next guest."""
    return GuestAccount.objects.filter(status=Status.SPARE).exclude(access_token_encrypted="")


def spares_ready() -> int:
    return spare_accounts_ready().count()


def accounts_due(policy: RetentionPolicy, now: datetime) -> QuerySet[GuestAccount]:
    """This policy's live accounts that are past their lifetime or idle for too long."""
    # Valid at the limit itself, due one moment after it.
    due = Q(created_at__lt=now - policy.account_lifetime)
    if policy.idle_timeout is not None:
        due |= Q(last_seen_at__lt=now - policy.idle_timeout)
    return GuestAccount.objects.filter(due, policy=policy, status__in=LIVE_OR_FAILED)


def accounts_due_count(policy: RetentionPolicy, now: datetime | None = None) -> int:
    return accounts_due(policy, now or timezone.now()).count()
