"""Writes of guest accounts: creating the record, provisioning it on the guest homeserver.

Every change of an account's row goes through ``move_guest_account(s)``: a conditional UPDATE
on the statuses it may leave, so that no step (a provisioning task, a refill, a rename) can
bring back an account that the expiry sweep or reconciliation has claimed meanwhile.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import GuestAccount, RetentionPolicy
from guestgate import homeservers
from guestgate.crypto import decrypt, encrypt, token_hash
from matrix import Forbidden, MatrixClient, UnknownToken, UserInUse

logger = logging.getLogger(__name__)


Status = GuestAccount.Status
#: An account a guest may still use.
LIVE = (Status.PENDING, Status.ACTIVE)


def move_guest_accounts(
    accounts: QuerySet[GuestAccount] | Iterable[int],
    *,
    from_: Iterable[str],
    to: str | None,
    **fields: object,
) -> int:
    """Set ``fields`` (and the status ``to``, unless None) on those of ``accounts`` (a query or
    ids) whose status is one of ``from_``; how many changed."""
    if to is not None:
        fields["status"] = to
    chosen = (
        accounts
        if isinstance(accounts, QuerySet)
        else GuestAccount.objects.filter(pk__in=list(accounts))
    )
    return chosen.filter(status__in=list(from_)).update(**fields)


def move_guest_account(
    account: GuestAccount, *, from_: Iterable[str], to: str | None, **fields: object
) -> bool:
    """``move_guest_accounts`` for one account, kept in step in memory; True if it changed."""
    if not move_guest_accounts([account.pk], from_=from_, to=to, **fields):
        return False
    for name, value in fields.items():
        setattr(account, name, value)
    if to is not None:
        account.status = to
    return True


def guest_account_ended(
    account: GuestAccount,
    *,
    from_: Iterable[str],
    reason: str,
    deactivated_at: datetime | None = None,
) -> bool:
    """Record an account as expired (its token forgotten): by its policy, or because the
    server no longer has it. True if this call recorded it."""
    return move_guest_account(
        account,
        from_=from_,
        to=Status.EXPIRED,
        expired_at=timezone.now(),
        deactivated_at=deactivated_at,
        access_token_encrypted="",
        expiry_reason=reason,
    )


def default_policy() -> RetentionPolicy:
    policy = RetentionPolicy.objects.filter(is_default=True).first()
    if policy is None:  # the migration makes one; an admin may have unmarked it
        policy, _ = RetentionPolicy.objects.get_or_create(
            name="Standard", defaults={"is_default": True}
        )
    return policy


def guest_account_create(
    *,
    display_name: str,
    browser_key: str,
    policy: RetentionPolicy,
    status: str = GuestAccount.Status.PENDING,
) -> GuestAccount:
    """Record a new guest account; it is registered on the homeserver by a task afterwards."""
    localpart = f"{settings.GUEST_USER_PREFIX}{secrets.token_hex(8)}"
    return GuestAccount.objects.create(
        localpart=localpart,
        user_id=homeservers.guest_user_id(localpart),
        display_name=display_name,
        browser_key_hash=token_hash(browser_key) if browser_key else "",
        policy=policy,
        status=status,
        last_seen_at=timezone.now(),
    )


def guest_account_seen(account: GuestAccount) -> None:
    """Note activity (the lobby page open): the idle timeout counts from here. At most one
    write a minute per account."""
    now = timezone.now()
    GuestAccount.objects.filter(
        pk=account.pk, status__in=LIVE, last_seen_at__lt=now - timedelta(minutes=1)
    ).update(last_seen_at=now)


def guest_account_rename(account: GuestAccount, *, display_name: str) -> None:
    if account.display_name != display_name:
        move_guest_account(account, from_=LIVE, to=None, display_name=display_name)


def guest_account_provision(account: GuestAccount, appservice: MatrixClient) -> None:
    """Register the account, log in its device and set its display name, on the guest server.

    Every step is idempotent and its completion recorded, so a retry after a failure at any
    point finishes the job without a second account or a stray device. A spare account
    (accounts/spares.py) is registered and logged in already: only the display name is left.
    ``appservice``: GuestGate's appservice client on the guest homeserver (its connection is
    reused for the knock that follows).

    Spec: https://spec.matrix.org/v1.16/application-service-api/#server-admin-style-permissions
    """
    guest_account_register(appservice, account)
    guest = appservice.as_user(account.user_id)
    try:
        guest.set_displayname(account.user_id, account.display_name)
    except Forbidden:
        # "Application service has not registered this user": the server forgot an account
        # recorded as registered (a spare or a returning guest's, after a reset).
        if not guest_account_log_in_again(appservice, account):
            raise
        guest.set_displayname(account.user_id, account.display_name)


def guest_account_register(appservice: MatrixClient, account: GuestAccount) -> None:
    """Register the account and log in its device, unless recorded as done already."""
    if account.registered_at is None:
        _register(appservice, account)
        # Recorded whatever the status now: the account exists on the server either way.
        move_guest_account(account, from_=Status.values, to=None, registered_at=timezone.now())
    if not account.access_token_encrypted:
        _log_in(appservice, account)


def guest_account_token_known(appservice: MatrixClient, account: GuestAccount) -> bool:
    """Whether the guest homeserver still knows the account's access token (one whoami)."""
    if not account.access_token_encrypted:
        return False
    try:
        appservice.with_token(decrypt(account.access_token_encrypted)).whoami()
    except (UnknownToken, Forbidden):  # Forbidden: a deactivated or locked account
        return False
    return True


def guest_account_log_in_again(appservice: MatrixClient, account: GuestAccount) -> bool:
    """Give the account a working token if the guest homeserver no longer knows its own; True
    if it had to.

    The token dies when the guest signs out in their Matrix client (a returning guest comes
    back with it), an admin logs them out, or the server is reset (then the account itself is
    gone and is registered again: its localpart is in GuestGate's exclusive namespace).
    """
    if guest_account_token_known(appservice, account):
        return False
    logger.warning("guest %s: the homeserver no longer knows its token; logging in again", account)
    _register(appservice, account)  # "in use" unless the server forgot the account itself
    _log_in(appservice, account)  # the dead token stays recorded until this one replaces it
    return True


def _register(appservice: MatrixClient, account: GuestAccount) -> None:
    try:
        appservice.register_appservice_user(account.localpart)
    except UserInUse:
        # The namespace is exclusive to GuestGate and the localpart random: this is our own
        # earlier attempt, which the homeserver completed before the answer was lost.
        logger.info("guest %s was already registered; continuing", account.user_id)


def _log_in(appservice: MatrixClient, account: GuestAccount) -> None:
    # A fixed device id: logging in again on a retry reuses the device.
    session = appservice.login_appservice_user(
        account.user_id,
        device_id=f"GUESTGATE{account.pk}",
        initial_device_display_name="GuestGate guest",
    )
    device = {
        "device_id": session.device_id or "",
        "access_token_encrypted": encrypt(session.access_token),
    }
    # A spare stays a spare, a new guest's account becomes active; one claimed for expiry
    # meanwhile keeps its claim (and the sweep deactivates the device with it).
    if not move_guest_account(account, from_=[Status.PENDING], to=Status.ACTIVE, **device):
        move_guest_account(account, from_=[Status.SPARE, Status.ACTIVE], to=None, **device)
