"""Celery tasks of join requests: each loads its row and calls one service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from celery import Task, shared_task
from django.utils import timezone

from guestgate.retrying import guest_message, run_retrying
from matrix import MatrixError
from rooms import join_requests as services
from rooms import moderation
from rooms.models import JoinRequest

Status = JoinRequest.Status


def _load(join_request_id: int) -> JoinRequest | None:
    return (
        JoinRequest.objects.select_related("room", "guest", "invite_link")
        .filter(pk=join_request_id)
        .first()
    )


def _guest_step(task: Task, join_request_id: int, step: Callable[[JoinRequest], None]) -> None:
    """Run one step of a guest's way in; the lobby shows retries, and a failure with words."""
    join_request = _load(join_request_id)
    if join_request is None:
        return

    def give_up(error: MatrixError) -> None:
        services.join_request_fail(join_request, message=guest_message(error))

    run_retrying(
        task,
        lambda: step(join_request),
        on_retry=lambda: services.join_request_note_retry(join_request),
        on_give_up=give_up,
    )


@shared_task(bind=True, max_retries=8)
def provision_join_request(self: Task, join_request_id: int) -> None:
    _guest_step(self, join_request_id, services.join_request_provision)


@shared_task(bind=True, max_retries=8)
def join_guest(self: Task, join_request_id: int) -> None:
    _guest_step(self, join_request_id, services.join_request_join)


@shared_task(bind=True, max_retries=8)
def approve_claimed(self: Task, join_request_id: int, moderator: str) -> None:
    """One guest of "let everyone in" (claimed when the moderator clicked): the invite, then
    the guest's join in the same task. With a join task of its own, each join queued behind
    all the invites: at 500 guests the median guest joined 72 s after the click."""
    join_request = _load(join_request_id)
    if join_request is None or join_request.decided_by != moderator:
        return
    if join_request.status in moderation.DECIDABLE:  # not invited yet (or a retry)
        run_retrying(
            self,
            lambda: moderation.join_request_invite_claimed(
                join_request, moderator=moderator, queue_join=False
            ),
            on_give_up=lambda error: moderation.join_request_release(
                join_request, moderator=moderator
            ),
        )
    _guest_step(self, join_request_id, services.join_request_join)  # only if invited now


@shared_task(bind=True, max_retries=8)
def withdraw_knock(self: Task, join_request_id: int) -> None:
    join_request = _load(join_request_id)
    if join_request is None:
        return
    run_retrying(
        self,
        lambda: services.join_request_withdraw_knock(join_request),
        on_give_up=lambda error: None,  # logged; the expiry sweep kicks stale knocks again
    )


@shared_task
def requeue_stuck_join_requests() -> int:
    """The database is the record of work: re-send tasks for requests stuck mid-flight (a lost
    message, a worker killed before it could retry). Safe: every task is idempotent."""
    now = timezone.now()
    stuck = JoinRequest.objects.filter(updated_at__lt=now - timedelta(minutes=2))
    provisioning = list(stuck.filter(status=Status.PROVISIONING).values_list("pk", flat=True))
    joining = list(
        stuck.filter(status__in=[Status.INVITED, Status.JOINING]).values_list("pk", flat=True)
    )
    for pk in provisioning:
        provision_join_request.delay(pk)
    for pk in joining:
        join_guest.delay(pk)
    return len(provisioning) + len(joining)
