"""The moderators' API: the same rights as the pages, errors in one JSON envelope."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from rooms.models import AuditEntry, CallRoom, JoinRequest
from tests.unit.conftest import MakeRoom

pytestmark = pytest.mark.django_db

MODERATOR = "@mona:main.test"
DOORKEEPER = "@dora:main.test"
OUTSIDER = "@otto:main.test"


@pytest.fixture
def room(make_room: MakeRoom) -> CallRoom:
    levels = {"invite": 10, "kick": 50, "ban": 60, "users": {MODERATOR: 60, DOORKEEPER: 10}}
    return make_room(power_levels=levels)


@pytest.fixture
def waiting(room: CallRoom) -> JoinRequest:
    request = JoinRequest.objects.create(
        public_id="00000000-0000-4000-8000-000000000002",
        room=room,
        user_id="@guest_x:guest.test",
        display_name="Alice (Guest)",
        status=JoinRequest.Status.WAITING,
    )
    AuditEntry.objects.create(
        room=room,
        join_request=request,
        action="knocked",
        actor=request.user_id,
        subject=request.user_id,
        subject_name=request.display_name,
        reason="hello",
    )
    return request


def api_client(matrix_id: str, *, superuser: bool = False) -> Client:
    client = Client()
    user = User.objects.create(username=matrix_id, is_superuser=superuser)
    client.force_login(user, backend="rooms.moderators.MatrixModeratorBackend")
    return client


def test_a_moderator_lists_their_rooms_with_rights_and_waiting(waiting: JoinRequest) -> None:
    rooms = api_client(MODERATOR).get("/api/v1/rooms").json()

    assert rooms == [
        {
            "id": waiting.room_id,
            "room_id": "!AbCdEf123",
            "name": "Team call",
            "status": "ready",
            "problems": [],
            "waiting": 1,
            "may_approve": True,
            "may_deny": True,
            "may_ban": True,
        }
    ]


def test_the_queue_lists_who_is_waiting(waiting: JoinRequest) -> None:
    queue = api_client(DOORKEEPER).get(f"/api/v1/rooms/{waiting.room_id}/join-requests").json()

    assert [(r["display_name"], r["status"], r["is_guest"]) for r in queue] == [
        ("Alice (Guest)", "waiting", False)
    ]


def test_an_outsider_gets_not_found_in_the_envelope(waiting: JoinRequest) -> None:
    client = api_client(OUTSIDER)

    assert client.get("/api/v1/rooms").json() == []
    answer = client.get(f"/api/v1/rooms/{waiting.room_id}/join-requests")
    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": "not_found", "message": "No such room."}}
    assert client.post(f"/api/v1/join-requests/{waiting.pk}/approve").status_code == 404


@pytest.mark.parametrize("action", ["deny", "ban", "remove-from-call"])
def test_too_little_power_is_403_and_changes_nothing(waiting: JoinRequest, action: str) -> None:
    answer = api_client(DOORKEEPER).post(f"/api/v1/join-requests/{waiting.pk}/{action}")

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"
    waiting.refresh_from_db()
    assert waiting.status == "waiting"


def test_an_anonymous_caller_is_refused() -> None:
    answer = Client().get("/api/v1/rooms")

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "not_authenticated"


def test_a_reason_that_is_too_long_is_a_validation_error(waiting: JoinRequest) -> None:
    answer = api_client(MODERATOR).post(
        f"/api/v1/join-requests/{waiting.pk}/deny",
        {"reason": "x" * 501},
        content_type="application/json",
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid"
    assert "reason" in answer.json()["error"]["fields"]
    waiting.refresh_from_db()
    assert waiting.status == "waiting"


def test_a_decision_already_made_is_a_409(waiting: JoinRequest) -> None:
    JoinRequest.objects.filter(pk=waiting.pk).update(decided_by="@other:main.test")

    answer = api_client(MODERATOR).post(f"/api/v1/join-requests/{waiting.pk}/approve")

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "request.already_decided"
    assert "@other:main.test" in answer.json()["error"]["message"]


def test_removing_someone_not_let_in_from_the_call_is_a_409(waiting: JoinRequest) -> None:
    answer = api_client(MODERATOR).post(f"/api/v1/join-requests/{waiting.pk}/remove-from-call")

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "request.not_joined"
    waiting.refresh_from_db()
    assert waiting.status == "waiting"


def test_the_let_in_list_says_who_is_in_the_call(waiting: JoinRequest) -> None:
    JoinRequest.objects.filter(pk=waiting.pk).update(status=JoinRequest.Status.JOINED)

    let_in = api_client(DOORKEEPER).get(f"/api/v1/rooms/{waiting.room_id}/let-in").json()

    assert [(r["display_name"], r["call"]) for r in let_in] == [
        ("Alice (Guest)", {"state": "not_joined", "since": None})
    ]


def test_the_audit_log_is_searchable(waiting: JoinRequest) -> None:
    client = api_client(MODERATOR)

    found = client.get(f"/api/v1/rooms/{waiting.room_id}/audit", {"q": "alice"}).json()
    missed = client.get(f"/api/v1/rooms/{waiting.room_id}/audit", {"q": "bob"}).json()

    assert [(e["action"], e["subject_name"]) for e in found] == [("knocked", "Alice (Guest)")]
    assert missed == []


def test_the_openapi_schema_describes_every_operation(waiting: JoinRequest) -> None:
    schema = api_client(MODERATOR).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()

    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= {
        "/api/v1/rooms",
        "/api/v1/rooms/{id}/join-requests",
        "/api/v1/rooms/{id}/approve-all",
        "/api/v1/rooms/{id}/audit",
        "/api/v1/join-requests/{id}/approve",
        "/api/v1/join-requests/{id}/deny",
        "/api/v1/join-requests/{id}/ban",
    }


def test_an_unknown_field_is_refused_not_ignored(room: CallRoom) -> None:
    answer = api_client(MODERATOR).post(
        f"/api/v1/rooms/{room.pk}/invite-links",
        {"lable": "typo", "max_uses": 3},
        content_type="application/json",
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {"lable": ["Unknown field."]}
    assert not room.invite_links.exists()


def test_a_json_value_of_another_type_is_refused(room: CallRoom) -> None:
    answer = api_client(MODERATOR).post(
        f"/api/v1/rooms/{room.pk}/invite-links",
        {"label": 5, "pre_approved": 0, "max_uses": "3"},
        content_type="application/json",
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {
        "label": ["Must be a string."],
        "pre_approved": ["Must be a boolean."],
        "max_uses": ["Must be an integer."],
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/rooms/-1.1/audit"),
        ("post", "/api/v1/join-requests/abc/approve"),
        ("get", "/api/v1/nothing-here"),
        ("delete", "/api/v2/rooms"),
    ],
)
def test_an_unknown_address_under_api_is_a_json_404(room: CallRoom, method: str, path: str) -> None:
    answer = getattr(api_client(MODERATOR), method)(path)

    assert answer.status_code == 404
    assert answer.json() == {
        "error": {"code": "not_found", "message": "No such address in the API."}
    }


def test_an_unknown_method_is_a_json_405(room: CallRoom) -> None:
    answer = api_client(MODERATOR).delete("/api/v1/rooms")

    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_the_schema_documents_errors_and_refuses_unknown_fields(room: CallRoom) -> None:
    schema = api_client(MODERATOR).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()

    deny = schema["paths"]["/api/v1/join-requests/{id}/deny"]["post"]
    assert set(deny["responses"]) == {"200", "400", "403", "404", "409", "415", "502", "503"}
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert deny["responses"]["409"]["content"]["application/json"]["schema"] == envelope
    assert list(deny["requestBody"]["content"]) == ["application/json"]
    assert schema["components"]["schemas"]["DenyInput"]["additionalProperties"] is False
