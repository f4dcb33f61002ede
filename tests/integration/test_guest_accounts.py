"""A guest account's row on the real guest homeserver: provisioning never undoes an expiry
claim."""

from __future__ import annotations

import pytest

from accounts.expiry import accounts_claim_due
from accounts.models import GuestAccount
from accounts.services import default_policy, guest_account_create, guest_account_provision
from guestgate import homeservers

pytestmark = pytest.mark.homeservers

Status = GuestAccount.Status


def test_an_account_claimed_for_expiry_while_it_is_provisioned_stays_claimed() -> None:
    policy = default_policy()
    account = guest_account_create(display_name="Ada (Guest)", browser_key="k", policy=policy)
    being_provisioned = GuestAccount.objects.get(pk=account.pk)  # what the task loaded
    GuestAccount.objects.filter(pk=account.pk).update(
        created_at=account.created_at - policy.account_lifetime * 2
    )
    assert [account.pk] in accounts_claim_due()  # the sweep claims it meanwhile

    with homeservers.guest_appservice() as appservice:
        guest_account_provision(being_provisioned, appservice)  # registers and logs in

    claimed = GuestAccount.objects.get(pk=account.pk)
    assert claimed.status == Status.EXPIRING  # the sweep deactivates it: nothing outlives it
    assert claimed.registered_at is not None  # and it knows there is an account to deactivate
