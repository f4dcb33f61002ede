"""Retention policies at their edges (frozen time), claims that never overlap, the purge."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts.expiry import (
    UNSTARTED_CLAIM_SECONDS,
    account_expiry_step,
    accounts_claim_due,
    accounts_expiry_started,
    accounts_expiry_waiting,
    expiry_lease,
)
from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import accounts_due_count, guest_account_returning
from accounts.services import default_policy
from guestgate.crypto import token_hash
from rooms.expiry import records_purge
from rooms.models import AuditEntry, CallRoom, JoinRequest

pytestmark = pytest.mark.django_db


def account(policy: RetentionPolicy, n: int = 1, **fields: Any) -> GuestAccount:
    return GuestAccount.objects.create(
        localpart=f"guest_{n}",
        user_id=f"@guest_{n}:guest.test",
        display_name=f"G{n}",
        status=GuestAccount.Status.ACTIVE,
        policy=policy,
        last_seen_at=timezone.now(),
        browser_key_hash=token_hash(f"browser-{n}"),
        **fields,
    )


def test_a_migration_made_the_default_policy() -> None:
    policy = default_policy()

    assert policy.is_default and policy.account_lifetime == timedelta(hours=24)


def test_an_account_is_valid_at_its_lifetime_and_due_one_second_later(time_machine: Any) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)

    time_machine.shift(policy.account_lifetime)
    assert accounts_due_count(policy) == 0
    time_machine.shift(timedelta(seconds=1))
    assert accounts_due_count(policy) == 1
    assert accounts_claim_due() == [[guest.pk]]


def test_the_idle_timeout_counts_from_the_last_activity(time_machine: Any) -> None:
    policy = RetentionPolicy.objects.create(name="Short idle", idle_timeout=timedelta(minutes=30))
    time_machine.move_to(timezone.now(), tick=False)
    account(policy)

    time_machine.shift(timedelta(minutes=30))
    assert accounts_due_count(policy) == 0
    time_machine.shift(timedelta(seconds=1))
    assert accounts_due_count(policy) == 1


def test_a_returning_guest_is_recognised_up_to_the_return_window(time_machine: Any) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)

    time_machine.shift(policy.return_window)
    assert guest_account_returning(browser_key="browser-1") == guest
    time_machine.shift(timedelta(seconds=1))
    assert guest_account_returning(browser_key="browser-1") is None
    assert guest_account_returning(browser_key="another browser") is None


def test_changing_a_policy_applies_to_existing_accounts(time_machine: Any) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    account(policy)
    time_machine.shift(timedelta(hours=2))
    assert accounts_due_count(policy) == 0

    policy.account_lifetime = timedelta(hours=1)
    policy.save()

    assert accounts_due_count(policy) == 1


def test_a_claimed_account_is_not_claimed_again_until_its_batch_stops_renewing_it(
    time_machine: Any, settings: Any
) -> None:
    settings.EXPIRY_STUCK_AFTER_SECONDS = 300
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)
    time_machine.shift(policy.account_lifetime + timedelta(seconds=1))

    assert accounts_claim_due() == [[guest.pk]]
    assert accounts_claim_due() == []
    assert accounts_expiry_started([guest.pk], holder="batch-1") == [guest.pk]  # it began
    time_machine.shift(expiry_lease())
    assert accounts_claim_due() == []  # held to the end of its lease
    time_machine.shift(timedelta(seconds=1))
    assert accounts_claim_due() == [[guest.pk]]  # and never renewed: a killed batch


def test_a_batch_leaves_alone_what_another_live_batch_holds(
    time_machine: Any, settings: Any
) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)
    time_machine.shift(policy.account_lifetime + timedelta(seconds=1))
    [[claimed]] = accounts_claim_due()

    assert accounts_expiry_started([claimed], holder="batch-1") == [guest.pk]
    assert accounts_expiry_started([claimed], holder="batch-2") == []  # a duplicate message
    assert accounts_expiry_started([claimed], holder="batch-1") == [guest.pk]  # its retry
    guest.refresh_from_db()
    assert account_expiry_step(guest, holder="batch-1")
    assert not account_expiry_step(guest, holder="batch-2")


def test_a_batch_waiting_to_retry_keeps_its_accounts_for_the_stuck_threshold(
    time_machine: Any, settings: Any
) -> None:
    settings.EXPIRY_STUCK_AFTER_SECONDS = 300
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)
    time_machine.shift(policy.account_lifetime + timedelta(seconds=1))
    accounts_claim_due()
    accounts_expiry_started([guest.pk], holder="batch-1")

    accounts_expiry_waiting("batch-1")  # the guest homeserver is down: retry later
    time_machine.shift(timedelta(seconds=300))
    assert accounts_claim_due() == []
    time_machine.shift(timedelta(seconds=1))
    assert accounts_claim_due() == [[guest.pk]]


def test_a_claim_still_waiting_in_the_queue_is_not_claimed_again(
    time_machine: Any, settings: Any
) -> None:
    """25 000 due accounts at ~80/s: the last batches wait in the queue for over 5 minutes.
    Claiming them again had accounts expired twice (make bench, last session)."""
    settings.EXPIRY_STUCK_AFTER_SECONDS = 300
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    guest = account(policy)
    time_machine.shift(policy.account_lifetime + timedelta(seconds=1))
    assert accounts_claim_due() == [[guest.pk]]

    time_machine.shift(timedelta(seconds=301))
    assert accounts_claim_due() == []  # queued, not stuck
    time_machine.shift(timedelta(seconds=UNSTARTED_CLAIM_SECONDS))
    assert accounts_claim_due() == [[guest.pk]]  # the broker lost it: claim it again


def test_claims_come_in_batches(time_machine: Any, settings: Any) -> None:
    settings.EXPIRY_BATCH_SIZE = 2
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    for n in range(5):
        account(policy, n)
    time_machine.shift(policy.account_lifetime + timedelta(seconds=1))

    assert [len(batch) for batch in accounts_claim_due()] == [2, 2, 1]


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_never_claim_the_same_account() -> None:
    policy = default_policy()
    old = timezone.now() - policy.account_lifetime - timedelta(minutes=1)
    for n in range(200):
        account(policy, n)
    GuestAccount.objects.update(created_at=old)
    claims: list[list[int]] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        start.wait()
        try:
            claims.append([pk for batch in accounts_claim_due() for pk in batch])
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    first, second = claims
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(GuestAccount.objects.values_list("pk", flat=True))


def test_records_are_purged_after_the_record_retention(time_machine: Any) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    room = CallRoom.objects.create(
        room_id="!R", status="ready", registered_by="x", checked_at=timezone.now()
    )
    guest = account(policy)
    request = JoinRequest.objects.create(
        public_id="00000000-0000-4000-8000-000000000003",
        room=room,
        guest=guest,
        user_id=guest.user_id,
        display_name="G1",
        status=JoinRequest.Status.DENIED,
    )
    AuditEntry.objects.create(
        room=room,
        join_request=request,
        action="denied",
        actor="@m:x",
        subject=guest.user_id,
        subject_name="G1",
    )
    GuestAccount.objects.filter(pk=guest.pk).update(status="expired", expired_at=timezone.now())

    time_machine.shift(policy.record_retention)
    kept = records_purge()
    assert (kept.join_requests, kept.audit_entries, kept.accounts) == (0, 0, 0)
    time_machine.shift(timedelta(seconds=1))
    result = records_purge()

    assert (result.join_requests, result.audit_entries, result.accounts) == (1, 1, 1)
    assert not GuestAccount.objects.exists()


def test_the_admin_says_how_many_accounts_a_policy_change_affects(
    admin_client: Any, time_machine: Any
) -> None:
    policy = default_policy()
    time_machine.move_to(timezone.now(), tick=False)
    account(policy, 1)
    account(policy, 2)
    time_machine.shift(timedelta(hours=3))

    answer = admin_client.post(
        f"/admin/accounts/retentionpolicy/{policy.pk}/change/",
        {
            "name": policy.name,
            "is_default": "on",
            "account_lifetime": "02:00:00",
            "idle_timeout": "",
            "erase_on_expiry": "on",
            "return_window": "12:00:00",
            "record_retention": "30 00:00:00",
            "displayname_suffix": " (Guest)",
            "max_guests_per_room": "",
        },
        follow=True,
    )

    assert (
        "This policy applies to 2 live guest accounts; 2 of them expire at the next sweep"
        in answer.content.decode()
    )


def test_a_suffix_saved_in_the_admin_keeps_its_spaces_and_later_guests_get_it(
    admin_client: Any, client: Any, token: str
) -> None:
    policy = default_policy()

    answer = admin_client.post(
        f"/admin/accounts/retentionpolicy/{policy.pk}/change/",
        {
            "name": policy.name,
            "is_default": "on",
            "account_lifetime": "1 00:00:00",
            "idle_timeout": "",
            "erase_on_expiry": "on",
            "return_window": "12:00:00",
            "record_retention": "30 00:00:00",
            "displayname_suffix": " (Gast)",
            "max_guests_per_room": "",
        },
    )
    assert answer.status_code == 302, answer.content.decode()
    client.post(f"/j/{token}", {"display_name": "Alice"})

    assert RetentionPolicy.objects.get(pk=policy.pk).displayname_suffix == " (Gast)"
    assert JoinRequest.objects.get().display_name == "Alice (Gast)"
