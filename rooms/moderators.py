"""Moderators sign in with their main-homeserver Matrix account.

The password goes to the main homeserver's login API; the token it returns is used once to
learn who the person is, then logged out. Nothing of it is stored. The Django user that
carries the session has the Matrix id as its username and no usable password.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.translation import gettext

from guestgate import homeservers
from guestgate.errors import GuestGateError
from matrix import BadRequest, Forbidden, MatrixError, UnknownToken
from ops.ratelimit import (
    ALLOWED,
    Backoff,
    Limit,
    Verdict,
    backoff_cleared,
    backoff_failed,
    backoff_verdict,
    rate_limit_check,
    rate_limit_count,
)

logger = logging.getLogger(__name__)


class SignInRefused(GuestGateError):
    code = "signin.refused"
    status = 400


def _full_matrix_id(typed: str) -> str:
    typed = typed.strip()
    if typed.startswith("@") and ":" in typed:
        return typed
    return f"@{typed.lstrip('@')}:{settings.MAIN_HS_SERVER_NAME}"


def _per_account_and_address() -> Backoff:
    """Wrong passwords for one account from one address: after the first few, each makes
    that address wait twice as long for that account. Keyed by both, so that guessing a
    (public) Matrix id from one address never locks its owner out at their own."""
    return Backoff(
        "signin-account-address",
        free=settings.SIGNIN_RATE_PER_ACCOUNT,
        first_wait=30,
        longest_wait=30 * 60,
        forget_after=6 * 60 * 60,
    )


def _account_and_address(user_id: str, ip: str) -> str:
    # Hashed: a cache key of fixed length and characters, whatever was typed as the id.
    return hashlib.sha256(f"{user_id.casefold()}\n{ip}".encode()).hexdigest()


def _per_address() -> Limit:
    """Wrong passwords from one address, whichever the accounts (one guesser, many ids)."""
    return Limit("signin-failures-address", settings.SIGNIN_RATE_PER_IP, 300)


def _throttled(user_id: str, ip: str) -> Verdict:
    for verdict in (
        backoff_verdict(_per_account_and_address(), _account_and_address(user_id, ip)),
        rate_limit_check(_per_address(), ip),
    ):
        if not verdict.allowed:
            return verdict
    return ALLOWED


def moderator_sign_in(*, matrix_id: str, password: str, ip: str) -> User:
    """Check the password against the main homeserver; the Django user of that Matrix id.

    Wrong passwords are throttled per account *and* client address (``ip``, see
    ops.clientaddress), with a growing wait, and per address; a right one forgets that
    address's wrong ones for the account.

    Raises SignInRefused with a message for the person; the same words whether the account
    exists or not.
    """
    user_id = _full_matrix_id(matrix_id)
    verdict = _throttled(user_id, ip)
    if not verdict.allowed:
        logger.warning("moderator sign-in throttled: %s from %s", user_id, ip)
        raise SignInRefused(
            gettext("Too many sign-in attempts. Please wait %(seconds)d seconds.")
            % {"seconds": verdict.retry_after},
            code="signin.throttled",
            status=429,
        )
    try:
        with homeservers.main_user() as anonymous:
            session = anonymous.password_login(user_id, password)
        with homeservers.main_user(session.access_token) as signed_in:
            who = signed_in.whoami()
            signed_in.logout()
    except (Forbidden, UnknownToken, BadRequest):
        backoff_failed(_per_account_and_address(), _account_and_address(user_id, ip))
        rate_limit_count(_per_address(), ip)
        raise SignInRefused(gettext("Wrong Matrix id or password."), code="signin.wrong") from None
    except MatrixError as error:
        logger.warning("moderator sign-in: main homeserver error %s", error.code)
        raise SignInRefused(
            gettext("The Matrix server did not answer. Please try again in a moment."),
            code="signin.unavailable",
            status=503,
        ) from None
    if len(who.user_id) > 150:
        raise SignInRefused(
            gettext("This Matrix id is too long for GuestGate."), code="signin.too_long"
        )
    backoff_cleared(_per_account_and_address(), _account_and_address(user_id, ip))
    user, created = User.objects.get_or_create(username=who.user_id)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


class MatrixModeratorBackend(BaseBackend):
    """Lets ``django.contrib.auth.login`` keep a moderator's session (authentication itself
    happens in ``moderator_sign_in``)."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        return None

    def get_user(self, user_id: int) -> User | None:
        return User.objects.filter(pk=user_id, is_active=True).first()
