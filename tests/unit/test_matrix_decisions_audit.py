"""A guest let in from Matrix (a reaction or a !guests command) is audited "in Matrix", in
whichever order the two paths record it: the approval task, or main's push of the bot's
invite when that push is applied first (seen failing in a test run)."""

from __future__ import annotations

import pytest

from rooms import notices
from rooms.models import AuditEntry, CallRoom, JoinRequest
from rooms.transitions import By, join_request_invited

pytestmark = pytest.mark.django_db(transaction=True)

MODERATOR = "@mona:main.test"


@pytest.fixture
def waiting(room: CallRoom) -> JoinRequest:
    return JoinRequest.objects.create(
        public_id="00000000-0000-4000-8000-0000000000a1",
        room=room,
        user_id="@guest_a:guest.test",
        display_name="Alice (Guest)",
        status=JoinRequest.Status.WAITING,
    )


def claimed_in_matrix(join_request: JoinRequest) -> None:
    decision = notices.Decision(deny=False, numbers=(1,))
    assert notices._claim(join_request.pk, MODERATOR, decision)  # a broker absent: logged


def test_the_pushed_invite_applied_first_is_audited_in_matrix(waiting: JoinRequest) -> None:
    claimed_in_matrix(waiting)

    assert join_request_invited(waiting, decider=None, by=By(None))  # main's push of it

    [entry] = AuditEntry.objects.filter(join_request=waiting, action="approved")
    assert entry.actor == MODERATOR
    assert entry.via_guestgate is False


def test_a_claim_re_sent_by_the_safety_net_is_still_audited_in_matrix(
    waiting: JoinRequest,
) -> None:
    """The minute's safety net invites a claim whose task was lost, without knowing where the
    decision was made: the audit still says."""
    claimed_in_matrix(waiting)

    assert join_request_invited(waiting, decider=None, by=By(MODERATOR))  # via GuestGate's task

    [entry] = AuditEntry.objects.filter(join_request=waiting, action="approved")
    assert entry.via_guestgate is False
