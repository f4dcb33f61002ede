"""Pages in the reader's language: English by default, German for a German browser or after
the language switch, and a complete German catalogue.

No homeserver is needed: the pages here are rendered from rows made in the test.
"""

from __future__ import annotations

import gettext
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone, translation

from matrix import Forbidden, HomeserverUnavailable, MatrixError
from ops.workers import HEARTBEAT_KEY, worker_heard
from rooms.invite_links import invite_link_create
from rooms.messages import BOT_MAY_NOT_KICK, failure_code, room_problem
from rooms.models import CallRoom, InviteLink, JoinRequest
from rooms.selectors import call_room_problems
from rooms.transitions import join_request_failed

pytestmark = pytest.mark.django_db

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}  # a German browser
MODERATOR = "@mona:main.test"
CATALOGUE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"


def html_of(answer: Any) -> str:  # the test client's response
    return answer.content.decode()


def joined_lobby(client: Client, token: str) -> UUID:
    """A guest asks to join (the lobby is then this browser's); the lobby's public id."""
    answer = client.post(f"/j/{token}", {"display_name": "Alice"})
    assert answer.status_code == 302
    return JoinRequest.objects.get().public_id


def test_the_join_page_is_english_by_default(client: Client, token: str) -> None:
    html = html_of(client.get(f"/j/{token}"))

    assert '<html lang="en">' in html
    assert "Join Team call" in html
    assert '<label for="id_display_name">Your name</label>' in html


def test_a_german_browser_gets_the_join_page_in_german(client: Client, token: str) -> None:
    answer = client.get(f"/j/{token}", headers=GERMAN)

    html = html_of(answer)
    assert answer.status_code == 200
    assert '<html lang="de-DE">' in html  # with the browser's region
    assert "Team call beitreten" in html
    assert '<label for="id_display_name">Ihr Name</label>' in html
    assert "Beitritt anfragen" in html
    assert answer["Content-Language"] == "de"


def test_a_german_guest_is_told_about_a_bad_name_in_german(client: Client, token: str) -> None:
    answer = client.post(f"/j/{token}", {"display_name": "@bob:example.org"}, headers=GERMAN)

    assert answer.status_code == 400
    assert "Bitte geben Sie einen Namen ein, keine Matrix-Adresse" in html_of(answer)


def test_a_german_browser_gets_the_link_error_page_in_german(client: Client, token: str) -> None:
    InviteLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    answer = client.get(f"/j/{token}", headers=GERMAN)

    html = html_of(answer)
    assert answer.status_code == 410
    assert 'data-code="link.expired"' in html  # codes stay as they are
    assert "Dieser Einladungslink kann nicht verwendet werden" in html
    assert "Dieser Einladungslink ist abgelaufen." in html


def test_an_unknown_link_is_explained_in_german(client: Client) -> None:
    answer = client.get("/j/AAAAAAAAAAAAAAAAAAAAAA", headers=GERMAN)

    assert answer.status_code == 404
    assert "Diesen Einladungslink gibt es nicht." in html_of(answer)


def test_the_lobby_status_speaks_the_guests_language(client: Client, token: str) -> None:
    public_id = joined_lobby(client, token)
    worker_heard()  # a worker runs (else the lobby says that none does: below)

    english = client.get(f"/lobby/{public_id}/status").json()
    german = client.get(f"/lobby/{public_id}/status", headers=GERMAN).json()

    assert english["title"] == "Creating your guest pass…"
    assert german["title"] == "Ihr Gastzugang wird erstellt …"
    assert german["message"] == "Das dauert einen Moment."
    assert german["status"] == "provisioning"  # codes stay as they are


def test_the_lobby_page_carries_the_moderators_words_for_the_script(
    client: Client, token: str
) -> None:
    public_id = joined_lobby(client, token)
    JoinRequest.objects.update(status=JoinRequest.Status.DENIED, reason="Members only")

    html = html_of(client.get(f"/lobby/{public_id}", headers=GERMAN))

    assert 'data-moderator-said="Begründung der Moderation:"' in html
    assert "Begründung der Moderation: <q>Members only</q>" in html
    assert "Sie wurden nicht eingelassen" in html


@pytest.mark.parametrize(
    ("error", "english", "german"),
    [
        (
            HomeserverUnavailable("timed out"),
            "The server is not answering at the moment, so your guest pass could not be "
            "finished. Please try again in a minute.",
            "Der Server antwortet gerade nicht, daher konnte Ihr Gastzugang nicht fertig "
            "eingerichtet werden. Bitte versuchen Sie es in einer Minute erneut.",
        ),
        (
            Forbidden("no", status=403, errcode="M_FORBIDDEN"),
            "Something went wrong on the server (matrix.forbidden). Please try again.",
            "Auf dem Server ist etwas schiefgegangen (matrix.forbidden). "
            "Bitte versuchen Sie es erneut.",
        ),
    ],
    ids=["unavailable", "refused"],
)
def test_a_failure_reaches_each_lobby_in_its_guests_language(
    client: Client, token: str, error: MatrixError, english: str, german: str
) -> None:
    public_id = joined_lobby(client, token)
    join_request = JoinRequest.objects.get(public_id=public_id)
    assert join_request_failed(join_request, reason_code=failure_code(error), detail=error.code)

    assert client.get(f"/lobby/{public_id}/status").json()["reason"] == english
    assert client.get(f"/lobby/{public_id}/status", headers=GERMAN).json()["reason"] == german


def test_a_moderators_reason_is_shown_as_typed(client: Client, token: str) -> None:
    public_id = joined_lobby(client, token)
    JoinRequest.objects.update(status=JoinRequest.Status.DENIED, reason="Nur für Mitglieder")

    state = client.get(f"/lobby/{public_id}/status", headers=GERMAN).json()

    assert state["reason"] == "Nur für Mitglieder"


def test_a_german_browser_gets_the_moderator_sign_in_in_german(client: Client) -> None:
    html = html_of(client.get("/moderator/sign-in", headers=GERMAN))

    assert "Zur Moderation anmelden" in html
    assert "Matrix-ID" in html and "Passwort" in html
    assert '<button type="submit">Anmelden</button>' in html


def test_the_moderator_sign_in_is_english_by_default(client: Client) -> None:
    html = html_of(client.get("/moderator/sign-in"))

    assert "Sign in as a moderator" in html
    assert '<label for="id_password">Password</label>' in html


def test_every_page_has_a_labelled_language_switch_that_works_without_javascript(
    client: Client, token: str
) -> None:
    html = html_of(client.get(f"/j/{token}"))

    switch = re.search(r'<form action="/i18n/setlang/" method="post".*?</form>', html, re.S)
    assert switch is not None
    form = switch.group(0)
    assert 'name="csrfmiddlewaretoken"' in form
    assert f'<input name="next" type="hidden" value="/j/{token}">' in form
    assert '<label for="language">Language</label>' in form
    assert '<select name="language" id="language">' in form
    assert '<option value="de" lang="de">Deutsch</option>' in form
    assert '<option value="en" lang="en" selected>English</option>' in form
    assert '<button type="submit"' in form


def test_the_switch_changes_the_language_and_overrides_the_browser(client: Client) -> None:
    switched = client.post("/i18n/setlang/", {"language": "de", "next": "/moderator/sign-in"})

    assert switched.status_code == 302
    assert switched["Location"] == "/moderator/sign-in"
    assert "Zur Moderation anmelden" in html_of(client.get("/moderator/sign-in"))

    client.post("/i18n/setlang/", {"language": "en", "next": "/moderator/sign-in"})
    assert "Sign in as a moderator" in html_of(client.get("/moderator/sign-in", headers=GERMAN))


def test_a_moderator_sees_the_room_and_its_stored_problems_in_german(
    client: Client, room: CallRoom
) -> None:
    room.status = CallRoom.Status.PROBLEM
    room.problems = [room_problem(BOT_MAY_NOT_KICK, bot_id="@guestgate:main.test", level=50)]
    room.save()
    client.force_login(
        User.objects.create(username=MODERATOR), backend="rooms.moderators.MatrixModeratorBackend"
    )

    html = html_of(client.get(f"/moderator/rooms/{room.pk}", headers=GERMAN))

    assert "Dieser Raum ist nicht bereit für Gäste" in html
    assert (
        "Der Bot von GuestGate, @guestgate:main.test, darf keine Personen entfernen "
        "(nötig, um Gäste abzulehnen): Geben Sie ihm die Berechtigungsstufe 50 oder höher."
    ) in html
    assert "Niemand wartet." in html


def test_a_problem_not_made_by_guestgate_is_shown_as_stored(room: CallRoom) -> None:
    room.problems = ["Something a newer version wrote."]

    with translation.override("de"):
        assert call_room_problems(room) == ["Something a newer version wrote."]


def test_absolute_times_say_utc_and_the_script_shows_them_in_the_viewers_zone(
    client: Client, room: CallRoom
) -> None:
    invite_link_create(
        room=room, created_by=MODERATOR, expires_at=timezone.now() + timedelta(hours=1)
    )
    client.force_login(
        User.objects.create(username=MODERATOR), backend="rooms.moderators.MatrixModeratorBackend"
    )

    html = html_of(client.get(f"/moderator/rooms/{room.pk}/links"))

    assert re.search(r'<time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', html)
    assert '<script src="/static/guestgate/localtime.js" defer></script>' in html


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _po_entries(text: str) -> list[dict[str, str]]:
    """The .po file's entries: each keyword (msgid, msgstr, msgstr[0] …) with its joined,
    unescaped text, and "flags" with the ``#,`` comment line."""
    entries = []
    for block in text.strip().split("\n\n"):
        entry: dict[str, str] = {"flags": ""}
        key = ""
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"] += line
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                entry[key] += _unescaped(line[1:-1])
            else:
                key, _, rest = line.partition(" ")
                entry[key] = _unescaped(rest[1:-1])
        entries.append(entry)
    return entries


def test_the_german_catalogue_is_complete_and_compiled() -> None:
    entries = _po_entries((CATALOGUE / "django.po").read_text(encoding="utf-8"))
    messages = [entry for entry in entries if entry.get("msgid")]

    assert len(messages) > 150
    for entry in entries:
        assert "fuzzy" not in entry["flags"], entry
    for entry in messages:
        translations = [value for key, value in entry.items() if key.startswith("msgstr")]
        assert translations and all(translations), f"not translated: {entry['msgid']!r}"

    with (CATALOGUE / "django.mo").open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    for entry in messages:
        if "msgctxt" in entry:
            compiled_text = catalogue.pgettext(entry["msgctxt"], entry["msgid"])
        elif "msgid_plural" in entry:
            compiled_text = catalogue.ngettext(entry["msgid"], entry["msgid_plural"], 1)
        else:
            compiled_text = catalogue.gettext(entry["msgid"])
        expected = entry.get("msgstr", entry.get("msgstr[0]"))
        assert compiled_text == expected, f"django.mo is older than django.po: {entry['msgid']!r}"


def test_the_lobby_says_in_the_guests_language_when_no_worker_runs(
    client: Client, token: str, settings: Any
) -> None:
    public_id = joined_lobby(client, token)
    # A cache of this test's own: the test processes' real worker writes its heartbeat to the
    # shared one every second.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.WORKER_HEARTBEAT_SECONDS = 10
    cache.set(HEARTBEAT_KEY, time.time() - 600, timeout=None)  # last heard 10 minutes ago

    german = client.get(f"/lobby/{public_id}/status", headers=GERMAN).json()

    assert german["message"].startswith("Gastzugänge können gerade nicht erstellt werden")
