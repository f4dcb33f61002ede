"""Spare guest accounts on the real guest homeserver: made ahead of time, given to an arriving
guest (who then only needs a display name and a knock), left alone by expiry, known to
reconciliation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.displaynames import CleanName
from accounts.expiry import accounts_claim_due, guest_accounts_reconcile
from accounts.models import GuestAccount
from accounts.selectors import guest_account_session, spares_ready
from accounts.services import default_policy
from accounts.spares import spare_accounts_refill
from guestgate import homeservers
from matrix import MatrixClient
from rooms.invite_links import invite_link_for_token
from rooms.models import CallRoom, JoinRequest
from rooms.provisioning import join_request_provision, join_request_start
from tests.conftest import unique_localpart
from tests.waiting import wait_for

pytestmark = pytest.mark.homeservers

Status = GuestAccount.Status


@pytest.fixture
def two_spares(settings: Any) -> list[GuestAccount]:
    settings.GUEST_SPARE_ACCOUNTS = 2
    assert spare_accounts_refill() == 2
    return list(GuestAccount.objects.filter(status=Status.SPARE).order_by("pk"))


def test_spares_are_registered_and_logged_in_with_their_own_device(
    two_spares: list[GuestAccount], settings: Any
) -> None:
    assert spares_ready() == 2
    for spare in two_spares:
        session = guest_account_session(spare)
        assert session is not None
        with MatrixClient(base_url=settings.GUEST_HS_URL, access_token=session.access_token) as c:
            whoami = c.whoami()
        assert whoami.user_id == spare.user_id
        assert whoami.device_id == f"GUESTGATE{spare.pk}" == spare.device_id

    assert spare_accounts_refill() == 0  # topped up already: nothing registered twice


def test_an_arriving_guest_gets_a_spare_and_knocks_under_their_own_name(
    two_spares: list[GuestAccount],
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    before = timezone.now()
    arrival = join_request_start(
        link=invite_link_for_token(invite_token),
        name=CleanName(typed="Alice", shown="Alice (Guest)"),
        browser_key=None,
    )
    join_request = JoinRequest.objects.select_related("room", "guest", "invite_link").get(
        pk=arrival.join_request.pk
    )
    account = join_request.guest
    assert account is not None and account.pk == two_spares[0].pk
    assert account.status == Status.ACTIVE
    assert account.display_name == "Alice (Guest)"
    assert account.created_at >= before  # its lifetime starts with the guest
    assert spares_ready() == 1

    join_request_provision(join_request)  # what the worker's task does: name, then knock

    wait_for(
        lambda: (
            (m := main_bot.member(call_room.room_id, account.user_id)) is not None
            and m.membership == "knock"
        ),
        what="the spare's knock on main",
    )
    member = main_bot.member(call_room.room_id, account.user_id)
    assert member is not None and member.displayname == "Alice (Guest)"


def test_no_spare_ready_means_a_new_account_as_before(settings: Any, invite_token: str) -> None:
    settings.GUEST_SPARE_ACCOUNTS = 2  # wanted, but none made yet
    arrival = join_request_start(
        link=invite_link_for_token(invite_token),
        name=CleanName(typed="Bob", shown="Bob (Guest)"),
        browser_key=None,
    )
    account = arrival.join_request.guest
    assert account is not None and account.status == Status.PENDING
    assert account.registered_at is None  # the task registers it


def test_expiry_leaves_spares_alone_and_reconciliation_knows_them(
    two_spares: list[GuestAccount], settings: Any
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    long_ago = timezone.now() - default_policy().account_lifetime - timedelta(days=1)
    GuestAccount.objects.filter(pk__in=[s.pk for s in two_spares]).update(created_at=long_ago)

    claimed = [pk for batch in accounts_claim_due() for pk in batch]
    result = guest_accounts_reconcile()

    assert not {s.pk for s in two_spares} & set(claimed)
    assert not {s.user_id for s in two_spares} & set(result.deactivated_unknown)
    assert spares_ready() == 2


def test_a_spare_gone_from_the_server_is_replaced_not_given_to_a_guest(
    two_spares: list[GuestAccount], guest_appservice: MatrixClient
) -> None:
    gone = two_spares[0]
    guest_appservice.as_user(gone.user_id).deactivate(erase=True)  # e.g. an admin, a reset

    assert spare_accounts_refill() == 1  # the gone one closed, a new one made

    gone.refresh_from_db()
    assert gone.status == Status.EXPIRED and gone.expiry_reason == "gone from server"
    assert spares_ready() == 2
    assert gone.pk not in set(
        GuestAccount.objects.filter(status=Status.SPARE).values_list("pk", flat=True)
    )


@pytest.mark.usefixtures("celery_worker")
def test_a_guest_given_a_spare_the_server_forgot_still_knocks(
    two_spares: list[GuestAccount],
    settings: Any,
    invite_token: str,
    call_room: CallRoom,
    main_bot: MatrixClient,
) -> None:
    # What a reset guest homeserver leaves: a row recorded as registered and logged in, for
    # an account and a token the server does not know (taken before the minute's check).
    forgotten = two_spares[0]
    session = guest_account_session(forgotten)
    assert session is not None
    with MatrixClient(base_url=settings.GUEST_HS_URL, access_token=session.access_token) as spare:
        spare.logout()
    never_registered = unique_localpart(settings.GUEST_USER_PREFIX)
    GuestAccount.objects.filter(pk=forgotten.pk).update(
        localpart=never_registered, user_id=homeservers.guest_user_id(never_registered)
    )

    arrival = join_request_start(
        link=invite_link_for_token(invite_token),
        name=CleanName(typed="Gus", shown="Gus (Guest)"),
        browser_key=None,
    )
    assert arrival.join_request.guest_id == forgotten.pk
    # The worker provisions it (the worker, not this test: two at once would race).
    wait_for(
        lambda: JoinRequest.objects.get(pk=arrival.join_request.pk).status == "waiting",
        what="the guest given a forgotten spare waiting",
    )

    account = GuestAccount.objects.get(pk=forgotten.pk)
    member = main_bot.member(call_room.room_id, account.user_id)
    assert member is not None and member.membership == "knock"
    assert member.displayname == "Gus (Guest)"
    session = guest_account_session(account)
    assert session is not None
    with MatrixClient(base_url=settings.GUEST_HS_URL, access_token=session.access_token) as c:
        assert c.whoami().user_id == account.user_id


def test_the_refill_after_a_take_does_not_check_every_spare(
    two_spares: list[GuestAccount], guest_appservice: MatrixClient
) -> None:
    guest_appservice.as_user(two_spares[0].user_id).deactivate(erase=True)

    assert spare_accounts_refill(check_ready=False) == 0  # two look ready: nothing to do
    assert spare_accounts_refill() == 1  # the minute's refill finds the gone one
