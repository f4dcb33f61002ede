"""The join page's answers to bad input: a clear message, the right status, nothing created.

No homeserver is needed: every case here is refused before one would be called.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import GuestAccount
from rooms.models import CallRoom, InviteLink, JoinRequest
from rooms.provisioning import provision_join_request
from tests.unit.conftest import MakeRoom

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(make_room: MakeRoom) -> CallRoom:
    return make_room(protected_names=["@mona:main.test", "Mona Moderator"])


def nothing_created() -> bool:
    return not GuestAccount.objects.exists() and not JoinRequest.objects.exists()


def test_the_join_page_shows_the_room_and_a_labelled_name_field(client: Client, token: str) -> None:
    page = client.get(f"/j/{token}")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Join Team call" in html
    assert '<label for="id_display_name">Your name</label>' in html
    assert 'autocomplete="name"' in html


def test_a_good_name_records_the_guest_and_queues_provisioning(
    client: Client, token: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        answer = client.post(f"/j/{token}", {"display_name": "  Alice  "})

    request = JoinRequest.objects.get()
    assert answer.status_code == 302
    assert answer["Location"] == f"/lobby/{request.public_id}"
    assert request.display_name == "Alice (Guest)"
    assert request.status == JoinRequest.Status.PROVISIONING
    assert request.guest is not None and request.guest.status == GuestAccount.Status.PENDING
    assert InviteLink.objects.get().use_count == 1
    assert len(callbacks) == 1  # the provisioning task, sent only after commit
    assert answer.cookies["guestgate_guest"]["httponly"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "This field is required."),
        ("\u200b\u202e", "Please type the name others should see."),
        ("x" * 65, "Please keep the name to 64 characters or fewer."),
        ("@bob:example.org", "Please type a name, not a Matrix address"),
        ("M0na Moderator", "too close to the name of someone in this room"),
        ("mona", "too close to the name of someone in this room"),
    ],
    ids=[
        "missing",
        "invisible-only",
        "too-long",
        "matrix-id",
        "moderator-look-alike",
        "moderator-localpart",
    ],
)
def test_a_bad_name_is_a_clear_form_error_and_creates_nothing(
    client: Client, token: str, name: str, message: str
) -> None:
    answer = client.post(f"/j/{token}", {"display_name": name})

    assert answer.status_code == 400
    html = answer.content.decode()
    assert message in html
    assert 'aria-invalid="true"' in html and 'role="alert"' in html
    assert nothing_created()
    assert InviteLink.objects.get().use_count == 0


def test_a_name_is_escaped_when_shown_back(client: Client, token: str) -> None:
    answer = client.post(f"/j/{token}", {"display_name": "<script>alert(1)</script>" + "x" * 70})

    assert answer.status_code == 400
    assert b"<script>alert(1)" not in answer.content
    assert b"&lt;script&gt;" in answer.content


def _expired(link: InviteLink) -> None:
    link.expires_at = timezone.now() - timedelta(seconds=1)


def _revoked(link: InviteLink) -> None:
    link.revoked_at = timezone.now()


def _used_up(link: InviteLink) -> None:
    link.max_uses, link.use_count = 2, 2


def _room_not_ready(link: InviteLink) -> None:
    CallRoom.objects.filter(pk=link.room_id).update(status=CallRoom.Status.PROBLEM)


@pytest.mark.parametrize(
    ("spoil", "status", "code", "words"),
    [
        (_expired, 410, "link.expired", "has expired"),
        (_revoked, 410, "link.revoked", "was withdrawn"),
        (_used_up, 410, "link.used_up", "used as many times"),
        (_room_not_ready, 410, "link.room_unavailable", "not open to guests"),
    ],
    ids=["expired", "revoked", "used-up", "room-not-ready"],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unusable_link_gets_a_clear_page_and_creates_nothing(
    client: Client,
    token: str,
    spoil: Callable[[InviteLink], None],
    status: int,
    code: str,
    words: str,
    method: str,
) -> None:
    link = InviteLink.objects.get()
    spoil(link)
    link.save()

    answer = getattr(client, method)(f"/j/{token}", {"display_name": "Alice"})

    assert answer.status_code == status
    assert f'data-code="{code}"' in answer.content.decode()
    assert words in answer.content.decode()
    assert nothing_created()


@pytest.mark.parametrize(
    "bad_token",
    ["AAAAAAAAAAAAAAAAAAAAAA", "short", "x" * 80, "%00%2e%2e"],
    ids=["random", "too-short", "too-long", "odd-characters"],
)
def test_an_unknown_or_tampered_token_is_not_found(
    client: Client, token: str, bad_token: str
) -> None:
    answer = client.post(f"/j/{bad_token}", {"display_name": "Alice"})

    assert answer.status_code == 404
    assert 'data-code="link.unknown"' in answer.content.decode()
    assert nothing_created()


def test_a_token_with_one_character_changed_is_not_found(client: Client, token: str) -> None:
    # Tokens are read case-insensitively (typed from posters), so change the letter itself.
    tampered = token[:-1] + ("b" if token[-1] != "b" else "c")

    assert client.get(f"/j/{tampered}").status_code == 404


def test_a_link_valid_at_its_expiry_instant_and_not_one_second_later(
    client: Client, token: str, time_machine: Any
) -> None:
    link = InviteLink.objects.get()
    link.expires_at = timezone.now() + timedelta(hours=1)
    link.save()

    time_machine.move_to(link.expires_at, tick=False)
    assert client.get(f"/j/{token}").status_code == 200
    time_machine.move_to(link.expires_at + timedelta(seconds=1), tick=False)
    assert client.get(f"/j/{token}").status_code == 410


def test_the_last_use_of_a_link_is_granted_once(client: Client, token: str) -> None:
    InviteLink.objects.update(max_uses=1)

    first = client.post(f"/j/{token}", {"display_name": "Alice"})
    second = Client().post(f"/j/{token}", {"display_name": "Bob"})

    assert first.status_code == 302
    assert second.status_code == 410
    assert JoinRequest.objects.count() == 1


def test_the_join_form_needs_its_csrf_token(token: str) -> None:
    strict = Client(enforce_csrf_checks=True)

    answer = strict.post(f"/j/{token}", {"display_name": "Alice"})

    assert answer.status_code == 403
    assert nothing_created()


@pytest.fixture
def own_cache(settings: Any) -> None:
    """A cache of this test's own, so every limit starts at zero (production shares Redis)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": secrets.token_hex(8),
        }
    }


@pytest.mark.usefixtures("own_cache")
def test_too_many_joins_from_one_address_get_a_429_with_retry_after(
    token: str, settings: Any
) -> None:
    settings.JOIN_RATE_PER_IP = 2
    for name in ("Alice", "Bob"):
        assert Client().post(f"/j/{token}", {"display_name": name}).status_code == 302

    answer = Client().post(f"/j/{token}", {"display_name": "Carol"})

    assert answer.status_code == 429
    assert 1 <= int(answer["Retry-After"]) <= 60
    assert "Please try again in" in answer.content.decode()
    assert JoinRequest.objects.count() == 2


@pytest.mark.usefixtures("own_cache")
def test_mistyped_names_do_not_use_up_the_join_limit_of_an_address(
    client: Client, token: str, settings: Any
) -> None:
    """Ten people on one office network scan one poster; some mistype their name first."""
    settings.JOIN_RATE_PER_IP = 2
    for _ in range(3):
        mistyped = client.post(f"/j/{token}", {"display_name": "@alice:name.example"})
        assert mistyped.status_code == 400

    answer = client.post(f"/j/{token}", {"display_name": "Alice"})

    assert answer.status_code == 302
    assert JoinRequest.objects.count() == 1


@pytest.mark.usefixtures("own_cache")
def test_rejected_attempts_have_a_limit_of_their_own(
    client: Client, token: str, settings: Any
) -> None:
    settings.JOIN_RATE_PER_IP = 100
    settings.JOIN_REJECTED_RATE_PER_IP = 3
    for _ in range(3):
        assert client.post(f"/j/{token}", {"display_name": "M0na"}).status_code == 400

    probing = client.post(f"/j/{token}", {"display_name": "M0na Moderator"})

    assert probing.status_code == 429
    assert 1 <= int(probing["Retry-After"]) <= 60
    assert "too close to the name" not in probing.content.decode()
    assert nothing_created()


def test_submitting_twice_from_one_browser_keeps_one_request(client: Client, token: str) -> None:
    first = client.post(f"/j/{token}", {"display_name": "Alice"})
    again = client.post(f"/j/{token}", {"display_name": "Alice"})

    assert first["Location"] == again["Location"]
    assert JoinRequest.objects.count() == 1
    assert InviteLink.objects.get().use_count == 1


def test_a_lobby_is_not_found_from_another_browser(client: Client, token: str) -> None:
    lobby = client.post(f"/j/{token}", {"display_name": "Alice"})["Location"]

    assert client.get(lobby).status_code == 200
    assert Client().get(lobby).status_code == 404
    assert Client().get(f"{lobby}/status").status_code == 404


def test_the_lobby_status_answers_at_once_without_a_version(client: Client, token: str) -> None:
    lobby = client.post(f"/j/{token}", {"display_name": "Alice"})["Location"]

    state = client.get(f"{lobby}/status").json()

    assert state["status"] == "provisioning"
    assert state["title"] == "Creating your guest pass…"
    assert state["session"] is None
    assert state["can_cancel"] is True


def test_a_nul_byte_in_a_name_is_removed_like_any_control_character(
    client: Client, token: str
) -> None:
    answer = client.post(f"/j/{token}", {"display_name": "Al\x00ice\x07"})

    assert answer.status_code == 302
    assert JoinRequest.objects.get().display_name == "Alice (Guest)"


@pytest.mark.parametrize("length", [65, 200, 201, 10_000])
def test_a_name_too_long_gets_the_same_message_at_any_length(
    client: Client, token: str, length: int
) -> None:
    answer = client.post(f"/j/{token}", {"display_name": "x" * length})

    assert answer.status_code == 400
    assert "Please keep the name to 64 characters or fewer." in answer.content.decode()
    assert nothing_created()


@pytest.mark.django_db(transaction=True)  # commits for real: the task is sent in the view
def test_a_broker_that_is_down_neither_fails_the_join_nor_makes_it_twice(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(provision_join_request, "apply_async", broker_down)

    first = client.post(f"/j/{token}", {"display_name": "Alice"})
    again = client.post(f"/j/{token}", {"display_name": "Alice"})

    assert first.status_code == 302
    assert again["Location"] == first["Location"]  # the guest's browser knows its request
    request = JoinRequest.objects.get()
    assert request.status == JoinRequest.Status.PROVISIONING  # recorded: re-sent when due
