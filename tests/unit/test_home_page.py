"""The home page: a guest types the code from a poster and lands on the join page; a wrong
code is said clearly, on the same page, and limited per address; nothing internal is shown
and no homeserver is called."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from guestgate.templatetags.pages import time_ago
from rooms.invite_codes import invite_code_read
from rooms.invite_links import grouped, invite_link_revoke
from rooms.models import InviteLink

TOKEN = "abcdefghijklmnopqrstuvwxyz"[:20] + "234567"  # 26 characters of base32


@pytest.mark.parametrize(
    "typed",
    [
        TOKEN,
        TOKEN.upper(),
        "abcde-fghij-klmno-pqrst-234567",  # as the poster prints it
        " ABCDE FGHIJ KLMNO PQRST 234567 ",  # spaces for dashes, capitals
        # A phone's en dash, em dash, minus sign and no-break hyphen.
        "abcde\u2013fghij\u2014klmno\u2212pqrst\u2011234567",
        "abcde\u00a0fghij\tklmno\npqrst 234567",  # any whitespace
        "https://guests.example.org/j/abcdefghijklmnopqrst234567",  # the link pasted
        "guests.example.org/j/ABCDE-FGHIJ-KLMNO-PQRST-234567?utm=poster#x",
    ],
)
def test_a_code_is_read_back_however_it_was_typed(typed: str) -> None:
    assert invite_code_read(typed).token == TOKEN


def test_a_zero_or_an_eight_read_off_paper_is_the_letter_base32_has() -> None:
    assert invite_code_read("8cde0-fghij-klmno-pqrst-234567").token == "bcdeofghijklmnopqrst234567"


@pytest.mark.parametrize(
    ("typed", "length"),
    [
        ("", 0),
        ("abcde-fghij", 10),  # half of it
        (TOKEN + "a", 27),  # one too many
        ("abcde-fghij-klmno-pqrst-23456!", 26),  # a character no code has
        ("abcde-fghij-klmno-pqrst-234569", 26),  # 9 is not base32
    ],
)
def test_what_is_not_a_code_is_refused_with_its_length(typed: str, length: int) -> None:
    read = invite_code_read(typed)

    assert read.token is None
    assert read.length == length


@pytest.fixture
def own_cache(settings: Any) -> None:
    """A cache of this test's own, so every limit starts at zero (production shares Redis)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": secrets.token_hex(8),
        }
    }


@pytest.fixture
def listening_homeservers(settings: Any) -> Iterator[list[socket.socket]]:
    """Both homeservers at addresses that accept connections and record them."""
    listeners = []
    for name in ("GUEST_HS_URL", "MAIN_HS_URL"):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        listeners.append(listener)
        setattr(settings, name, f"http://127.0.0.1:{listener.getsockname()[1]}")
    yield listeners
    for listener in listeners:
        listener.close()


def test_the_home_page_asks_for_the_code_and_shows_nothing_internal(
    client: Client, settings: Any, listening_homeservers: list[socket.socket]
) -> None:
    page = client.get("/")

    html = page.content.decode()
    assert page.status_code == 200
    assert '<label for="id_code">Enter the code from your invitation</label>' in html
    assert 'aria-describedby="code-help"' in html
    assert 'href="/moderator/sign-in"' in html
    for internal in (settings.GUEST_HS_URL, settings.MAIN_HS_URL, "/admin/", "@"):
        assert internal not in html
    for listener in listening_homeservers:  # no homeserver was called
        with pytest.raises(BlockingIOError):
            listener.accept()


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["plain", "as printed", "typed loosely"])
def test_a_code_leads_to_the_join_page_of_its_link(client: Client, token: str, shape: str) -> None:
    typed = {
        "plain": token,
        "as printed": grouped(token),
        "typed loosely": grouped(token).upper().replace("-", " "),
    }[shape]

    answer = client.post("/", {"code": typed})

    assert answer.status_code == 302
    assert answer["Location"] == f"/j/{token}"
    assert client.get(answer["Location"]).status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("own_cache")
def test_a_code_of_no_link_is_said_on_the_same_page_with_what_was_typed(client: Client) -> None:
    answer = client.post("/", {"code": "zzzzz-zzzzz-zzzzz-zzzzz-zzzzzz"})

    html = answer.content.decode()
    assert answer.status_code == 400
    assert "This invite link does not exist." in html
    assert 'id="code-error" role="alert"' in html
    assert 'aria-invalid="true"' in html
    assert 'aria-describedby="code-help code-error"' in html
    assert 'value="zzzzz-zzzzz-zzzzz-zzzzz-zzzzzz"' in html


@pytest.mark.django_db
@pytest.mark.usefixtures("own_cache")
def test_a_short_code_is_told_how_many_characters_it_lacks(client: Client) -> None:
    answer = client.post("/", {"code": "abcde-fghij-klmno"})

    assert answer.status_code == 400
    assert "An invitation code has 26 letters and digits; you typed 15." in answer.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("own_cache")
def test_the_code_of_a_revoked_link_says_so(client: Client, token: str) -> None:
    invite_link_revoke(InviteLink.objects.get(), by="@mod:main")

    answer = client.post("/", {"code": grouped(token)})

    assert answer.status_code == 400
    assert "This invite link was withdrawn by the organisers." in answer.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("own_cache")
def test_wrong_codes_are_limited_per_address_and_the_limit_reads_no_code(
    client: Client, token: str, settings: Any
) -> None:
    settings.JOIN_REJECTED_RATE_PER_IP = 3
    for _ in range(3):
        assert client.post("/", {"code": "zzzzz-zzzzz-zzzzz-zzzzz-zzzzzz"}).status_code == 400

    refused = client.post("/", {"code": grouped(token)})  # even a right one, until the wait ends

    html = refused.content.decode()
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many wrong codes were typed from here." in html
    assert f'value="{grouped(token)}"' in html  # kept, to send again later


@pytest.mark.django_db
@pytest.mark.usefixtures("own_cache")
def test_right_codes_do_not_count_against_the_limit(
    client: Client, token: str, settings: Any
) -> None:
    """A class of thirty types the poster's code from one school network."""
    settings.JOIN_REJECTED_RATE_PER_IP = 3
    for _ in range(5):
        assert client.post("/", {"code": grouped(token)}).status_code == 302


@pytest.mark.django_db
def test_the_page_language_carries_the_browsers_region(client: Client) -> None:
    british = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    german = client.get("/", headers={"Accept-Language": "de-at,de;q=0.9,en;q=0.5"})
    plain = client.get("/", headers={"Accept-Language": "en"})

    assert '<html lang="en-GB">' in british.content.decode()
    assert '<html lang="de-AT">' in german.content.decode()
    assert '<html lang="en">' in plain.content.decode()


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86399, "23 h ago"),
        (86400, "1 d ago"),
        (-5, "just now"),  # a clock a little ahead of the server's
    ],
)
def test_times_in_lists_are_said_in_short_words(seconds: int, said: str) -> None:
    now = timezone.now()

    assert time_ago(now - timedelta(seconds=seconds), now=now) == said
