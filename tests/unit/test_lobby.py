"""The lobby's answers to bad input and what it lets caches keep. No homeserver is needed:
the guest is still being set up when these requests arrive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import GuestAccount

pytestmark = pytest.mark.django_db


@pytest.fixture
def lobby(client: Client, token: str) -> str:
    """The lobby path of a guest who has just asked to join from ``client``."""
    return str(client.post(f"/j/{token}", {"display_name": "Alice"})["Location"])


@pytest.mark.parametrize(
    "since",
    ["²", "①", "٣", "1²", "-1", "1.0", " 1", "1" * 5000],
    ids=[
        "superscript",
        "circled",
        "arabic-indic",
        "digit-then-superscript",
        "negative",
        "decimal",
        "space",
        "too-many-digits",
    ],
)
def test_a_version_that_is_not_a_plain_number_is_a_clear_400_and_changes_nothing(
    client: Client, lobby: str, since: str
) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    GuestAccount.objects.update(last_seen_at=long_ago)

    answer = client.get(f"{lobby}/status", {"since": since})

    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "code": "lobby.bad_version",
            "message": "since must be a version number given by this lobby (digits 0-9).",
        }
    }
    assert GuestAccount.objects.get().last_seen_at == long_ago  # not counted as activity


def test_a_version_other_than_the_current_one_answers_at_once(client: Client, lobby: str) -> None:
    answer = client.get(f"{lobby}/status", {"since": "9" * 20})

    assert answer.status_code == 200
    assert answer.json()["status"] == "provisioning"


def test_the_lobby_page_is_never_stored_by_a_cache(client: Client, lobby: str) -> None:
    page = client.get(lobby)

    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert "no-store" in client.get(f"{lobby}/status")["Cache-Control"]
