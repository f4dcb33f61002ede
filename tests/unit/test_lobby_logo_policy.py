"""A logo on another site (GUESTGATE_ORG_LOGO_URL) shows on the lobby too: the lobby's own
policy (it adds the guest homeserver and the call) allows the logo's origin, as every other
page's does."""

from __future__ import annotations

from typing import Any

from guestgate.branding import branding_read
from ops.security import lobby_policy


def img_sources(policy: str) -> list[str]:
    [directive] = [part.strip() for part in policy.split(";") if part.strip().startswith("img-src")]
    return directive.split()[1:]


def test_the_lobby_allows_an_external_logos_origin(settings: Any) -> None:
    settings.CALL_MODE = "embedded"  # the lobby's own policy (link mode has the default one)
    settings.BRANDING = branding_read(
        name="Example", logo="https://cdn.example.org/logo.svg", accent="#225599"
    )

    assert "https://cdn.example.org" in img_sources(lobby_policy())


def test_with_the_default_logo_the_lobby_allows_only_its_own_images(settings: Any) -> None:
    settings.CALL_MODE = "embedded"
    settings.BRANDING = branding_read(name="Example", logo="guestgate/logo.svg", accent="#225599")

    assert img_sources(lobby_policy()) == ["'self'", "data:"]
