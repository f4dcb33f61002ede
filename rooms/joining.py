"""The last step of a guest's way in: once main shows the invite, GuestGate joins the guest."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from accounts.services import guest_account_log_in_again
from guestgate import homeservers
from guestgate.retrying import send_after_commit
from rooms.guest_steps import guest_step_run
from rooms.models import JoinRequest
from rooms.transitions import join_request_joined, join_request_joining

Status = JoinRequest.Status


def via() -> list[str]:
    """Servers to reach a call room through (room ids of version 12 name none)."""
    return [settings.MAIN_HS_SERVER_NAME]


def join_request_join(join_request: JoinRequest) -> None:
    """Join the invited guest to the room (retrying the invite/join race of MATRIX-LAB P8)."""
    if join_request.status not in (Status.INVITED, Status.JOINING) or join_request.guest is None:
        return  # people with their own Matrix account join by themselves
    join_request_joining(join_request)
    account = join_request.guest
    with homeservers.guest_appservice() as appservice:
        if account.registered_at is not None and account.registered_at < join_request.created_at:
            # A token from before this request (a spare's, a returning guest's) may have died
            # since (they signed out in their Matrix client): the lobby hands out a live one.
            # Before the join: main's push of the join tells the lobby.
            guest_account_log_in_again(appservice, account)
        appservice.as_user(join_request.user_id).ensure_joined(join_request.room.room_id, via=via())
    join_request_joined(join_request)


def join_after_commit(join_request: JoinRequest) -> None:
    """Queue the guest's join once the invite is recorded (people with their own account join
    by themselves)."""
    if join_request.guest_id is not None:
        pk = join_request.pk
        send_after_commit(join_guest, pk)


@shared_task(bind=True, max_retries=8)
def join_guest(self: Task, join_request_id: int) -> None:
    guest_step_run(self, join_request_id, join_request_join)
