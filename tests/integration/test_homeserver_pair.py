"""The Matrix steps GuestGate is built on, against the two real federating Synapse servers."""

from __future__ import annotations

import pytest

from devtools.localpair import LocalPair
from matrix import MatrixClient, UnknownToken
from rooms.models import MembershipEvent
from tests.waiting import wait_for

pytestmark = pytest.mark.homeservers


def test_a_guest_account_is_registered_through_the_appservice_with_a_real_device(
    homeserver_pair: LocalPair, guest_appservice: MatrixClient, guest_user_id: str
) -> None:
    session = guest_appservice.login_appservice_user(guest_user_id)

    with MatrixClient(base_url=session.homeserver_url, access_token=session.access_token) as c:
        who = c.whoami()
    assert who.user_id == guest_user_id
    assert guest_user_id.endswith(f":{homeserver_pair.guest.server_name}")
    assert who.device_id == session.device_id is not None


def test_a_name_outside_guestgates_namespace_is_refused(
    guest_appservice: MatrixClient,
) -> None:
    from matrix import ExclusiveNamespace, InvalidUsername

    with pytest.raises((ExclusiveNamespace, InvalidUsername)):
        guest_appservice.register_appservice_user("someone_else")


def test_a_knock_reaches_main_and_main_pushes_it_to_guestgate(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    guest_user_id: str,
    knock_room: str,
) -> None:
    guest = guest_appservice.as_user(guest_user_id)
    guest.set_displayname(guest_user_id, "Alice (Guest)")

    guest.knock(knock_room, via=[homeserver_pair.main.server_name], reason="Hi, it's Alice")

    member = main_bot.member(knock_room, guest_user_id)
    assert member is not None and member.membership == "knock"
    pushed = wait_for(
        lambda: MembershipEvent.objects.filter(
            room_id=knock_room, user_id=guest_user_id, membership="knock"
        ).first(),
        what="the knock pushed by main to the appservice endpoint",
    )
    assert pushed.reason == "Hi, it's Alice"
    assert pushed.displayname == "Alice (Guest)"


def test_an_invited_guest_joins_the_room_on_main(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    guest_user_id: str,
    knock_room: str,
) -> None:
    guest = guest_appservice.as_user(guest_user_id)
    guest.knock(knock_room, via=[homeserver_pair.main.server_name])

    main_bot.ensure_invited(knock_room, guest_user_id, reason="approved by Mona")
    # Inviting twice is "already there", not an error.
    main_bot.ensure_invited(knock_room, guest_user_id, reason="approved by Mona")
    guest.ensure_joined(knock_room, via=[homeserver_pair.main.server_name])

    def joined_on_main() -> bool:
        member = main_bot.member(knock_room, guest_user_id)
        return member is not None and member.membership == "join"

    wait_for(joined_on_main, what="the guest's join on main")


def test_a_denied_knock_is_kicked_on_main_and_pushed_as_a_leave(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    guest_user_id: str,
    knock_room: str,
) -> None:
    guest_appservice.as_user(guest_user_id).knock(
        knock_room, via=[homeserver_pair.main.server_name]
    )

    main_bot.ensure_kicked(knock_room, guest_user_id, reason="not on the guest list")

    member = main_bot.member(knock_room, guest_user_id)
    assert member is not None and member.membership == "leave"
    assert member.reason == "not on the guest list"
    pushed = wait_for(
        lambda: MembershipEvent.objects.filter(
            room_id=knock_room, user_id=guest_user_id, membership="leave"
        ).first(),
        what="the kick pushed by main",
    )
    assert pushed.prev_membership == "knock"
    assert pushed.reason == "not on the guest list"


def test_a_banned_guest_cannot_knock_again(
    homeserver_pair: LocalPair,
    guest_appservice: MatrixClient,
    main_bot: MatrixClient,
    guest_user_id: str,
    knock_room: str,
) -> None:
    from matrix import Forbidden

    guest = guest_appservice.as_user(guest_user_id)
    guest.knock(knock_room, via=[homeserver_pair.main.server_name])
    main_bot.ensure_banned(knock_room, guest_user_id, reason="spam")

    with pytest.raises(Forbidden):
        guest.knock(knock_room, via=[homeserver_pair.main.server_name])


def test_deactivation_with_erase_kills_the_guests_token(
    guest_appservice: MatrixClient, guest_user_id: str
) -> None:
    session = guest_appservice.login_appservice_user(guest_user_id)

    guest_appservice.as_user(guest_user_id).deactivate(erase=True)

    with (
        MatrixClient(base_url=session.homeserver_url, access_token=session.access_token) as c,
        pytest.raises(UnknownToken),
    ):
        c.whoami()
