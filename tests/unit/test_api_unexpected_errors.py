"""An error nobody planned for still answers the API's JSON envelope (issue 12, item 21:
every /api/ answer is JSON) and is logged with its traceback."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.test import Client

from rooms import api
from rooms.models import CallRoom

pytestmark = pytest.mark.django_db


def test_an_unexpected_error_is_a_json_500_in_the_envelope_and_is_logged(
    room: CallRoom, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(user: object) -> list[object]:
        raise RuntimeError("a bug in a selector")

    monkeypatch.setattr(api, "rooms_for_moderator", broken)  # the one error path faked
    client = Client(raise_request_exception=False)
    client.force_login(
        User.objects.create(username="@mod:main.test"),
        backend="rooms.moderators.MatrixModeratorBackend",
    )

    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/rooms")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert "a bug in a selector" not in error["message"]  # no internals to the caller
    assert any(r.exc_info and "a bug in a selector" in str(r.exc_info[1]) for r in caplog.records)
