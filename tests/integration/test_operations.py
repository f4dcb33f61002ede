"""What an operator's checks ask of the homeservers, against the two real federating Synapses."""

from __future__ import annotations

import pytest
from django.conf import settings

from devtools.localpair import LocalPair
from matrix import Forbidden, MatrixClient, NotFound
from ops import doctor, health

pytestmark = pytest.mark.homeservers


def test_both_homeservers_pass_the_homeserver_check(homeserver_pair: LocalPair) -> None:
    for server in homeserver_pair.servers:
        check = health.check_homeserver(server.client_url)

        assert check.ok, check
        assert check.detail.startswith("answers (Matrix v1.")


def test_registration_on_the_guest_homeserver_is_closed_to_everyone(
    guest_appservice: MatrixClient,
) -> None:
    with pytest.raises(Forbidden, match="Registration has been disabled"):
        guest_appservice.username_available(f"{settings.GUEST_USER_PREFIX}doctor")


def test_main_pings_guestgates_appservice_url(main_bot: MatrixClient) -> None:
    took = main_bot.appservice_ping(settings.MAIN_APPSERVICE_ID, transaction_id="ops-test")

    assert took is not None and took >= 0


def test_a_profile_is_read_across_federation(
    guest_appservice: MatrixClient, main_bot: MatrixClient, guest_user_id: str
) -> None:
    guest_appservice.as_user(guest_user_id).set_displayname(guest_user_id, "Alice (Guest)")

    assert main_bot.profile(guest_user_id).displayname == "Alice (Guest)"
    with pytest.raises(NotFound) as raised:
        main_bot.profile(guest_user_id.replace("@", "@nobody_", 1))
    assert raised.value.errcode == "M_NOT_FOUND"


def test_the_doctor_finds_the_local_pair_working() -> None:
    """The call's focus included: the pair's dev focus (devtools.rtcfocus) checks OpenID
    tokens with the guest homeserver for real."""
    problems = {label: outcome for label, outcome in doctor.run_all() if outcome.ok is not True}

    assert problems == {}
