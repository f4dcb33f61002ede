"""Who may create call rooms, the room settings page (the room's admins choose its retention
policy), and durations in /admin/'s retention policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import RetentionPolicy
from rooms.models import CallRoom
from rooms.permissions import may_create_call_rooms
from tests.unit.conftest import MODERATOR, MakeRoom

ADMIN_OF_ROOM = "@ada:main.test"


def signed_in(name: str, **fields: Any) -> Client:
    client = Client()
    client.force_login(
        User.objects.create(username=name, **fields),
        backend="rooms.moderators.MatrixModeratorBackend",
    )
    return client


@pytest.fixture
def administered_room(make_room: MakeRoom) -> CallRoom:
    """Mona may moderate (50); Ada may change the room's power levels (100)."""
    return make_room(
        power_levels={
            "invite": 0,
            "kick": 50,
            "ban": 50,
            "users": {MODERATOR: 50, ADMIN_OF_ROOM: 100},
            "events": {"m.room.power_levels": 100},
        }
    )


@pytest.mark.parametrize(
    ("creators", "user", "may"),
    [
        ([":main.test"], "@mona:main.test", True),
        ([":main.test"], "@eve:elsewhere.test", False),
        (["@mona:main.test"], "@mona:main.test", True),
        (["@mona:main.test"], "@max:main.test", False),
        ([], "@mona:main.test", False),
        ([":main.test"], "admin", False),  # no Matrix id: the room would have no admin
    ],
)
def test_who_may_create_call_rooms_is_the_setting(
    db: None, settings: Any, creators: list[str], user: str, may: bool
) -> None:
    settings.ROOM_CREATORS = creators

    assert may_create_call_rooms(User.objects.create(username=user)) is may


def test_the_room_creation_page_offers_its_form_to_a_room_creator(db: None, settings: Any) -> None:
    settings.ROOM_CREATORS = [":main.test"]

    page = signed_in(MODERATOR).get("/moderator/rooms/new")

    assert page.status_code == 200 and 'name="name"' in page.content.decode()


def test_the_rooms_admin_chooses_its_retention_policy(administered_room: CallRoom) -> None:
    german = RetentionPolicy.objects.get(name="Deutsch")
    ada = signed_in(ADMIN_OF_ROOM)

    assert "Room settings" in ada.get(f"/moderator/rooms/{administered_room.pk}").content.decode()
    saved = ada.post(
        f"/moderator/rooms/{administered_room.pk}/settings",
        {"retention_policy": str(german.pk)},
        follow=True,
    )

    assert "The room&#x27;s settings are saved." in saved.content.decode()
    administered_room.refresh_from_db()
    assert administered_room.retention_policy == german
    ada.post(f"/moderator/rooms/{administered_room.pk}/settings", {"retention_policy": ""})
    administered_room.refresh_from_db()
    assert administered_room.retention_policy is None


def test_a_moderator_who_may_not_change_power_levels_may_not_change_the_settings(
    administered_room: CallRoom,
) -> None:
    mona = signed_in(MODERATOR)
    german = RetentionPolicy.objects.get(name="Deutsch")

    page = mona.get(f"/moderator/rooms/{administered_room.pk}/settings")
    refused = mona.post(
        f"/moderator/rooms/{administered_room.pk}/settings", {"retention_policy": str(german.pk)}
    )

    assert page.status_code == 403 and refused.status_code == 403
    assert (
        "Room settings" not in mona.get(f"/moderator/rooms/{administered_room.pk}").content.decode()
    )
    administered_room.refresh_from_db()
    assert administered_room.retention_policy is None


def test_an_unknown_policy_is_a_form_error_and_changes_nothing(administered_room: CallRoom) -> None:
    answer = signed_in(ADMIN_OF_ROOM).post(
        f"/moderator/rooms/{administered_room.pk}/settings", {"retention_policy": "999999"}
    )

    assert answer.status_code == 400 and 'id="id_retention_policy_error"' in answer.content.decode()
    administered_room.refresh_from_db()
    assert administered_room.retention_policy is None


# -- /admin/: durations as people type them, the German suffix ----------------------------------


@pytest.fixture
def admin_client_(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    return client


def policy_form(**changes: str) -> dict[str, str]:
    form = {
        "name": "Workshop",
        "account_lifetime": "1d",
        "idle_timeout": "",
        "left_call_timeout": "",
        "erase_on_expiry": "on",
        "return_window": "12h",
        "record_retention": "30d",
        "displayname_suffix": " (Gast)",
        "max_guests_per_room": "",
    }
    return form | changes


def test_an_admin_types_durations_as_2h_and_sees_them_back_that_way(admin_client_: Client) -> None:
    answer = admin_client_.post(
        "/admin/accounts/retentionpolicy/add/",
        policy_form(account_lifetime="2h", idle_timeout="90m", left_call_timeout="1d 12h"),
    )

    assert answer.status_code == 302, answer.content.decode()[:3000]
    policy = RetentionPolicy.objects.get(name="Workshop")
    assert policy.account_lifetime == timedelta(hours=2)
    assert policy.idle_timeout == timedelta(minutes=90)
    assert policy.left_call_timeout == timedelta(days=1, hours=12)
    assert policy.displayname_suffix == " (Gast)"
    form = admin_client_.get(
        f"/admin/accounts/retentionpolicy/{policy.pk}/change/"
    ).content.decode()
    assert 'value="2h"' in form and 'value="1h 30m"' in form and 'value="1d 12h"' in form
    assert '<option value=" (Gast)">' in form  # offered
    listing = admin_client_.get("/admin/accounts/retentionpolicy/").content.decode()
    assert "1d 12h" in listing


def test_a_duration_the_admin_cannot_read_is_refused_with_the_format_named(
    admin_client_: Client,
) -> None:
    answer = admin_client_.post(
        "/admin/accounts/retentionpolicy/add/", policy_form(account_lifetime="two hours")
    )

    assert answer.status_code == 200
    assert "Enter a duration such as 2h, 90m or 1d 12h." in answer.content.decode()
    assert not RetentionPolicy.objects.filter(name="Workshop").exists()


def test_a_german_policy_is_offered_with_the_german_suffix(db: None) -> None:
    german = RetentionPolicy.objects.get(name="Deutsch")
    default = RetentionPolicy.objects.get(is_default=True)

    assert german.displayname_suffix == " (Gast)" and not german.is_default
    assert german.account_lifetime == default.account_lifetime


def test_a_german_browser_gets_the_room_creation_page_in_german(db: None, settings: Any) -> None:
    settings.ROOM_CREATORS = [":main.test"]

    page = signed_in(MODERATOR).get(
        "/moderator/rooms/new", headers={"Accept-Language": "de-DE,de;q=0.9"}
    )

    assert "Neuer Anrufraum" in page.content.decode() and "Raum erstellen" in page.content.decode()
