"""System checks: settings that must be present or agree, said in words an operator can act on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

_HOMESERVER_SETTINGS = {
    "GUEST_HS_URL": "the client-server URL of the guest homeserver, e.g. http://127.0.0.1:8008",
    "GUEST_HS_SERVER_NAME": "the guest homeserver's server_name, e.g. guests.example.org",
    "GUEST_AS_TOKEN": "as_token of GuestGate's appservice registration on the guest homeserver",
    "MAIN_HS_URL": "the client-server URL of the main homeserver",
    "MAIN_HS_SERVER_NAME": "the main homeserver's server_name, e.g. example.org",
    "MAIN_AS_TOKEN": "as_token of GuestGate's appservice registration on the main homeserver",
    "MAIN_HS_TOKEN": "hs_token of that registration (the main homeserver sends it with pushes)",
}


@register(Tags.compatibility)
def homeservers_configured(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, meaning in _HOMESERVER_SETTINGS.items():
        if not getattr(settings, name):
            errors.append(
                Error(
                    f"{name} is not set.",
                    hint=f"Set {name} to {meaning}, or run python -m devtools to use the "
                    "local homeserver pair (make run does that).",
                    id="guestgate.E001",
                )
            )
    for name in ("GUEST_HS_URL", "MAIN_HS_URL"):
        url = getattr(settings, name)
        if url and not url.startswith(("http://", "https://")):
            errors.append(Error(f"{name}={url!r} is not an http(s) URL.", id="guestgate.E002"))
    if settings.GUEST_AS_TOKEN and settings.GUEST_AS_TOKEN == settings.MAIN_AS_TOKEN:
        errors.append(
            Error(
                "GUEST_AS_TOKEN and MAIN_AS_TOKEN are the same.",
                hint="Each homeserver needs its own appservice registration with its own tokens.",
                id="guestgate.E003",
            )
        )
    return errors


@register(Tags.security)
def secret_key_set(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    if not key:
        return [
            Error(
                "GUESTGATE_SECRET_KEY is not set.",
                hint="Set it (or GUESTGATE_SECRET_KEY_FILE) to a long random string, e.g. the "
                "output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="guestgate.E010",
            )
        ]
    return []


@register(Tags.staticfiles)
def logo_found(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A logo given as a static file's path must be one (a typo would show a broken image)."""
    branding = settings.BRANDING
    if branding.logo_is_static and not finders.find(branding.logo):
        return [
            Error(
                f"GUESTGATE_ORG_LOGO_URL={branding.logo!r} is not a static file.",
                hint="Give the path of a file under static/ (or the front end's build), an "
                "https:// URL, or a path on this site starting with /.",
                id="guestgate.E020",
            )
        ]
    return []
