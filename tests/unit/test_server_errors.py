"""What a person gets when GuestGate fails: a database too busy to answer (SQLite locked by
other writers, seen in a burst of 500 guests on a loaded machine) is a 503 that says to try
again and that nothing was saved; any other fault a plain 500 page; under /api/, JSON."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from django.test import Client, RequestFactory

from ops.views import server_error
from rooms import guest_views
from rooms.invite_links import invite_link_create
from rooms.models import CallRoom, JoinRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(room: CallRoom) -> str:
    return invite_link_create(room=room, created_by="@mod:main.test").token


def join_failing_with(monkeypatch: pytest.MonkeyPatch, error: Exception, token: str):
    def failing(**kwargs: object) -> None:
        raise error

    monkeypatch.setattr(guest_views, "join_request_start", failing)  # the one path faked
    client = Client(raise_request_exception=False)
    return client.post(f"/j/{token}", {"display_name": "Alice"})


def test_a_locked_database_answers_503_try_again_and_nothing_was_saved(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    response = join_failing_with(monkeypatch, OperationalError("database is locked"), token)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "very busy" in page and "Nothing was saved" in page
    assert JoinRequest.objects.count() == 0


def test_any_other_fault_is_a_plain_500_page(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    response = join_failing_with(monkeypatch, RuntimeError("a bug"), token)

    assert response.status_code == 500
    assert "a bug" not in response.content.decode()
    assert "Something went wrong" in response.content.decode()


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(OperationalError("database is locked"), 503, "busy"), (KeyError("x"), 500, "internal_error")],
)
def test_under_api_the_answers_are_the_json_envelope(
    rf: RequestFactory, error: Exception, status: int, code: str
) -> None:
    """For what fails outside the API's views (a middleware saving the session): Django calls
    the 500 handler while the exception is being handled."""
    request = rf.get("/api/v1/rooms")
    try:
        raise error
    except Exception:
        response = server_error(request)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == code
