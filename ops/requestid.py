"""One id per request, in every log line it causes: in the web process and in Celery tasks.

The id comes from the ``X-Request-ID`` header when a proxy sent a sane one (so the proxy's
logs and ours line up), else it is made here; the response carries it back. Tasks enqueued
while handling a request get it in their message headers, and the worker logs under it, so
one guest's way through web and worker can be followed with one search. A task that no
request caused (beat) logs under its own task id, which the tasks it enqueues inherit.

Why not the django-guid package: its id check is either "a UUID" (``VALIDATE_GUID``: a
proxy's sane non-UUID id such as ``edge-7f3a.b_c-9`` is replaced) or none at all (spaces,
``<script>`` and 65-character ids are kept and echoed back); a task no request sent gets a
new random id instead of its task id; and its log filter gives None, not "-", outside
requests. Each of these is a behaviour tests/unit/test_requestid.py requires.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from celery import signals
from django.core.signals import request_finished, request_started
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
#: The Celery message header that carries the id from the publisher to the worker.
TASK_HEADER = "guestgate_request_id"

_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("guestgate_request_id", default=None)


def sane_request_id(value: str | None) -> str | None:
    """``value`` if it can go into logs and headers as it is, else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Take a sane ``X-Request-ID`` or make one; log under it; send it back.

    The id stays set until the response is closed (``request_finished``), not only while the
    middleware runs: Django logs 4xx and 5xx answers, and runserver its access line, after
    the middleware has returned, and those lines belong to the request too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = sane_request_id(request.headers.get(HEADER)) or new_request_id()
        request_id.set(rid)
        response = self.get_response(request)
        response[HEADER] = rid
        return response


@receiver(request_started)
@receiver(request_finished)
def _forget_request_id(**kwargs: Any) -> None:
    request_id.set(None)


class RequestIdFilter(logging.Filter):
    """Give every record a ``request_id`` attribute ("-" outside requests and tasks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


# -- Celery ----------------------------------------------------------------------------------

# The context variable's tokens of the tasks running in this process, by task id.
_task_tokens: dict[str, Token[str | None]] = {}


def _put_request_id_in_headers(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: send the current id along with the task."""
    current = request_id.get()
    if current and headers is not None:
        headers[TASK_HEADER] = current


def _take_request_id(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """task_prerun: log under the id the task was sent with, else under the task's own id."""
    sent = getattr(getattr(task, "request", None), TASK_HEADER, None)
    rid = sane_request_id(sent if isinstance(sent, str) else None) or sane_request_id(task_id)
    if task_id:
        _task_tokens[task_id] = request_id.set(rid)


def _drop_request_id(task_id: str | None = None, **kwargs: Any) -> None:
    """task_postrun: back to no id."""
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        try:
            request_id.reset(token)
        except ValueError:  # set in another context (a pool that switches them): just clear
            request_id.set(None)


def connect_celery_signals() -> None:
    """Carry request ids through Celery messages; called once by ``guestgate.celery``."""
    signals.before_task_publish.connect(_put_request_id_in_headers, weak=False)
    signals.task_prerun.connect(_take_request_id, weak=False)
    signals.task_postrun.connect(_drop_request_id, weak=False)
