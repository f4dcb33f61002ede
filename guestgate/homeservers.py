"""The homeservers GuestGate is configured with, as Matrix clients built from settings.

Homeserver URLs and tokens come from settings only, never from user input (STYLE 5).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from matrix import MatrixClient


def guest_appservice() -> MatrixClient:
    """GuestGate's appservice on the guest homeserver; ``.as_user(uid)`` acts as a guest."""
    return MatrixClient(
        base_url=settings.GUEST_HS_URL,
        access_token=settings.GUEST_AS_TOKEN,
        timeout=settings.MATRIX_TIMEOUT_SECONDS,
        retries=settings.MATRIX_RETRIES,
    )


def main_bot() -> MatrixClient:
    """GuestGate's bot on the main homeserver (the appservice sender), which moderates."""
    return MatrixClient(
        base_url=settings.MAIN_HS_URL,
        access_token=settings.MAIN_AS_TOKEN,
        timeout=settings.MATRIX_TIMEOUT_SECONDS,
        retries=settings.MATRIX_RETRIES,
    )


def main_user(access_token: str | None = None) -> MatrixClient:
    """A client of the main homeserver as a person (e.g. a moderator signing in)."""
    return MatrixClient(
        base_url=settings.MAIN_HS_URL,
        access_token=access_token,
        timeout=settings.MATRIX_TIMEOUT_SECONDS,
        retries=settings.MATRIX_RETRIES,
    )


def main_bot_user_id() -> str:
    return f"@{settings.MAIN_BOT_LOCALPART}:{settings.MAIN_HS_SERVER_NAME}"


def guest_user_id(localpart: str) -> str:
    return f"@{localpart}:{settings.GUEST_HS_SERVER_NAME}"


def guest_admin_token() -> str:
    """A Synapse admin token on the guest homeserver, for reconciliation only: from
    GUEST_ADMIN_TOKEN, or the file GUEST_ADMIN_TOKEN_FILE names, read now (the local pair's)."""
    if settings.GUEST_ADMIN_TOKEN:
        return str(settings.GUEST_ADMIN_TOKEN)
    if settings.GUEST_ADMIN_TOKEN_FILE:
        try:
            return Path(settings.GUEST_ADMIN_TOKEN_FILE).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"GUEST_ADMIN_TOKEN_FILE {settings.GUEST_ADMIN_TOKEN_FILE}: {exc.strerror}"
            ) from None
    raise ImproperlyConfigured(
        "Reconciliation lists accounts with Synapse's admin API: set GUEST_ADMIN_TOKEN."
    )
