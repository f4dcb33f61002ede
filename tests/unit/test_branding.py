"""The organisation's name, logo and accent colour: read and checked at start-up, shown in
every page's header and title and on the poster, the accent delivered as a stylesheet of its
own (the strict CSP forbids inline styles) and always readable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from guestgate.branding import (
    DARK_BACKGROUNDS,
    LIGHT_BACKGROUNDS,
    READABLE,
    Colour,
    branding_read,
)
from guestgate.checks import logo_found
from guestgate.env import ImproperlyConfiguredEnv

pytestmark = pytest.mark.django_db

BASE_CSS = Path(django_settings.BASE_DIR) / "static" / "guestgate" / "base.css"


def start_up(**variables: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` in a process of its own, as GuestGate starts, with ``variables``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **variables}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stylesheet_values(css: str) -> dict[str, list[str]]:
    """Each custom property of the branding stylesheet: its light value, then its dark one."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r"(--[a-z-]+): (#[0-9a-f]{6})", css):
        found.setdefault(name, []).append(value)
    return found


# -- start-up --------------------------------------------------------------------------------


def test_a_bad_accent_colour_stops_start_up_saying_what_would_do() -> None:
    result = start_up(GUESTGATE_ACCENT_COLOR="blue-ish")

    assert result.returncode != 0
    assert "GUESTGATE_ACCENT_COLOR='blue-ish' is not a colour: use #rrggbb" in result.stderr


@pytest.mark.parametrize(
    "logo", ["javascript:alert(1)", "data:image/svg+xml,<svg>", "https://", "../secret.png"]
)
def test_a_logo_that_is_no_url_or_static_path_is_refused(logo: str) -> None:
    with pytest.raises(ImproperlyConfiguredEnv, match="GUESTGATE_ORG_LOGO_URL"):
        branding_read(name="", logo=logo, accent="")


def test_an_organisation_name_with_control_characters_is_refused() -> None:
    with pytest.raises(ImproperlyConfiguredEnv, match="GUESTGATE_ORG_NAME"):
        branding_read(name="Example\x1b[31m", logo="", accent="")


def test_a_logo_on_another_site_is_the_one_image_the_csp_allows_from_elsewhere() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.CONTENT_SECURITY_POLICY)",
        ],
        cwd=django_settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "GUESTGATE_ORG_LOGO_URL": "https://cdn.example.org/brand/logo.png",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert "img-src 'self' data: https://cdn.example.org;" in result.stdout


def test_a_logo_given_as_a_static_path_that_does_not_exist_fails_the_checks(settings) -> None:
    settings.BRANDING = branding_read(name="", logo="guestgate/no-such-logo.svg", accent="")

    assert [error.id for error in logo_found(None)] == ["guestgate.E020"]

    settings.BRANDING = branding_read(name="", logo="guestgate/logo.svg", accent="")
    assert logo_found(None) == []


# -- the accent stays readable ---------------------------------------------------------------


@pytest.mark.parametrize("accent", ["#ffeb3b", "#0b6bcb", "#e91e63", "#222", "#7fffd4", "#000080"])
def test_any_accent_gives_readable_buttons_and_links_in_light_and_dark_mode(accent: str) -> None:
    values = stylesheet_values(branding_read(name="", logo="", accent=accent).stylesheet)
    button = Colour.parse(values["--accent"][0])
    button_text = Colour.parse(values["--on-accent"][0])
    link_light, link_dark = (Colour.parse(value) for value in values["--accent-text"])

    assert button == Colour.parse(accent)  # the organisation's colour itself, on buttons
    assert button.contrast(button_text) >= READABLE
    for ground in LIGHT_BACKGROUNDS:
        assert link_light.contrast(Colour.parse(ground)) >= READABLE
    for ground in DARK_BACKGROUNDS:
        assert link_dark.contrast(Colour.parse(ground)) >= READABLE


def test_base_css_uses_the_backgrounds_the_accent_is_checked_against() -> None:
    css = BASE_CSS.read_text()
    light, _, dark = css.partition("@media (prefers-color-scheme: dark)")

    for part, (bg, surface) in ((light, LIGHT_BACKGROUNDS), (dark, DARK_BACKGROUNDS)):
        assert f"--bg: {bg}" in part
        assert f"--surface: {surface}" in part


# -- pages -----------------------------------------------------------------------------------


def test_every_page_names_the_organisation_and_links_its_accent(client: Client, settings) -> None:
    settings.BRANDING = branding_read(
        name="Example e.V.", logo="https://cdn.example.org/logo.png", accent="#8a2be2"
    )

    for path in ("/", "/moderator/sign-in"):
        page = client.get(path).content.decode()
        assert re.search(r"<title>[^<]* \u2013 Example e\.V\.</title>", page), path
        assert '<img src="https://cdn.example.org/logo.png" alt="" height="32">' in page
        assert "<span>Example e.V.</span>" in page
        linked = re.findall(r'<link rel="stylesheet" href="(/branding\.css\?v=\w+)">', page)
        assert len(linked) == 1, path

    css = client.get(linked[0])
    assert css["Content-Type"] == "text/css; charset=utf-8"
    assert "--accent: #8a2be2;" in css.content.decode()
    assert css["Cache-Control"] == "public, max-age=31536000, immutable"


def test_the_stylesheet_asked_for_by_an_old_hash_is_todays_and_cached_briefly(
    client: Client,
) -> None:
    response = client.get("/branding.css?v=0000000000000000")

    assert "--accent: #0b6bcb;" in response.content.decode()
    assert response["Cache-Control"] == "public, max-age=300"


def test_by_default_the_header_shows_guestgates_own_name_and_mark(client: Client) -> None:
    page = client.get("/").content.decode()

    assert '<img src="/static/guestgate/logo.svg" alt="" height="32"><span>GuestGate</span>' in page
    assert "<title>Join a call \u2013 GuestGate</title>" in page
