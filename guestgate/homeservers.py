"""The homeservers GuestGate is configured with, as Matrix clients built from settings.

Homeserver URLs and tokens come from settings only, never from user input (STYLE 5).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from matrix import MatrixClient, MatrixError
from matrix.admin import reset_federation_connection

logger = logging.getLogger(__name__)


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
    """A Synapse admin token on the guest homeserver, for reconciliation and for resetting its
    backoff from main: from GUEST_ADMIN_TOKEN, or the file GUEST_ADMIN_TOKEN_FILE names, read
    now (the local pair's)."""
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


def main_answers() -> bool:
    """Whether the main homeserver answers GuestGate now (its unauthenticated ``/versions``)."""
    try:
        # Asked once: this runs in a task whose knock just failed, which retries anyway.
        with MatrixClient(
            base_url=settings.MAIN_HS_URL,
            access_token=None,
            timeout=settings.MATRIX_TIMEOUT_SECONDS,
            retries=0,
        ) as client:
            client.versions()
    except MatrixError:
        return False
    return True


def guest_server_retry_main_now() -> bool:
    """Have the guest homeserver try main again at once, instead of waiting out the backoff
    it keeps after failing to reach main (Synapse's admin API; needs GUEST_ADMIN_TOKEN).
    False if there was nothing to reset, or it could not be done (logged)."""
    try:
        token = guest_admin_token()
    except ImproperlyConfigured:
        logger.warning(
            "the guest homeserver may be backing off from main; set GUEST_ADMIN_TOKEN to let "
            "GuestGate reset that when main answers again"
        )
        return False
    try:
        reset = reset_federation_connection(
            settings.GUEST_HS_URL,
            access_token=token,
            destination=settings.MAIN_HS_SERVER_NAME,
            timeout=settings.MATRIX_TIMEOUT_SECONDS,
        )
    except MatrixError as error:
        logger.warning("could not reset the guest homeserver's backoff from main: %s", error)
        return False
    if reset:
        logger.info("main answers again: the guest homeserver's backoff from it was reset")
    return reset
