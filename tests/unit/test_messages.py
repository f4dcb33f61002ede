"""What GuestGate tells a guest when it gave up on a step (rooms/messages.py)."""

from __future__ import annotations

from django.utils import translation

from matrix import Forbidden, HomeserverUnavailable
from rooms.messages import (
    MAIN_UNREACHABLE,
    SERVER_FAILED,
    SERVER_UNAVAILABLE,
    failure_code,
    guest_sentence,
)
from rooms.provisioning import MainUnreachable


def test_a_call_server_that_is_away_is_named_and_try_again_is_promised_when_it_is_back():
    error = MainUnreachable("the call's server does not answer", status=502)

    assert failure_code(error) == MAIN_UNREACHABLE
    assert "works as soon as it is back" in guest_sentence(MAIN_UNREACHABLE, error.code)
    with translation.override("de"):
        assert "sobald er wieder da ist" in guest_sentence(MAIN_UNREACHABLE, error.code)


def test_other_failures_keep_their_sentences():
    assert failure_code(HomeserverUnavailable("down", status=503)) == SERVER_UNAVAILABLE
    assert failure_code(Forbidden("no", status=403)) == SERVER_FAILED
