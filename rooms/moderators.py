"""Moderators sign in with their main-homeserver Matrix account.

The password goes to the main homeserver's login API; the token it returns is used once to
learn who the person is, then logged out. Nothing of it is stored. The Django user that
carries the session has the Matrix id as its username and no usable password.
"""

from __future__ import annotations

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
from ops.ratelimit import Limit, rate_limits_hit

logger = logging.getLogger(__name__)


class SignInRefused(GuestGateError):
    code = "signin.refused"
    status = 400


def _full_matrix_id(typed: str) -> str:
    typed = typed.strip()
    if typed.startswith("@") and ":" in typed:
        return typed
    return f"@{typed.lstrip('@')}:{settings.MAIN_HS_SERVER_NAME}"


def moderator_sign_in(*, matrix_id: str, password: str, ip: str) -> User:
    """Check the password against the main homeserver; the Django user of that Matrix id.

    Raises SignInRefused with a message for the person; the same words whether the account
    exists or not.
    """
    user_id = _full_matrix_id(matrix_id)
    verdict = rate_limits_hit(
        [
            (Limit("signin-account", settings.SIGNIN_RATE_PER_ACCOUNT, 300), user_id.casefold()),
            (Limit("signin-ip", settings.SIGNIN_RATE_PER_IP, 300), ip),
        ]
    )
    if not verdict.allowed:
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
