"""How a task runs one step of a guest's way in: load the request, retry what may pass, and
give up with words the lobby shows."""

from __future__ import annotations

from collections.abc import Callable

from celery import Task

from guestgate.retrying import run_retrying
from matrix import MatrixError
from rooms.messages import failure_code
from rooms.models import JoinRequest
from rooms.transitions import join_request_failed, join_request_note_retry


def join_request_load(join_request_id: int) -> JoinRequest | None:
    """The request with what every step reads, or None if it is gone (tasks then return)."""
    return (
        JoinRequest.objects.select_related("room", "guest", "invite_link")
        .filter(pk=join_request_id)
        .first()
    )


def guest_step_run(task: Task, join_request_id: int, step: Callable[[JoinRequest], None]) -> None:
    """Run ``step``; the lobby shows retries, and a failure it gave up on."""
    join_request = join_request_load(join_request_id)
    if join_request is None:
        return

    def give_up(error: MatrixError) -> None:
        join_request_failed(join_request, reason_code=failure_code(error), detail=error.code)

    run_retrying(
        task,
        lambda: step(join_request),
        on_retry=lambda: join_request_note_retry(join_request),
        on_give_up=give_up,
    )
