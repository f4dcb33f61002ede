"""Reads of the rooms app."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings

from accounts.services import guest_account_session
from rooms.models import JoinRequest

Status = JoinRequest.Status

_TITLES = {
    Status.PROVISIONING: "Creating your guest pass…",
    Status.WAITING: "Waiting for a moderator",
    Status.INVITED: "You have been let in",
    Status.JOINING: "You have been let in",
    Status.JOINED: "You are in the call",
    Status.DENIED: "You were not let in",
    Status.BANNED: "You cannot join this call",
    Status.CANCELLED: "You left the waiting room",
    Status.FAILED: "Something went wrong",
    Status.EXPIRED: "This guest pass has expired",
}
_MESSAGES = {
    Status.PROVISIONING: "This takes a moment.",
    Status.WAITING: "A moderator of the call will let you in. Keep this page open; it updates "
    "by itself.",
    Status.INVITED: "Joining the call…",
    Status.JOINING: "Joining the call…",
    Status.JOINED: "Open the call to take part.",
    Status.DENIED: "A moderator did not let you in.",
    Status.BANNED: "A moderator did not let you in, and you cannot ask again.",
    Status.CANCELLED: "You stopped waiting. You can open the invite link again to ask again.",
    Status.FAILED: "",
    Status.EXPIRED: "Guest passes last a limited time. Open the invite link again for a new one.",
}


def join_request_for_lobby(public_id: str) -> JoinRequest | None:
    return JoinRequest.objects.select_related("room", "guest").filter(public_id=public_id).first()


def join_request_version(public_id: str) -> int | None:
    return JoinRequest.objects.filter(public_id=public_id).values_list("version", flat=True).first()


def lobby_state(join_request: JoinRequest) -> dict[str, Any]:
    """What the guest's lobby shows, as JSON for the live page and context for the template."""
    status = Status(join_request.status)
    message = _MESSAGES[status]
    if status == Status.PROVISIONING and join_request.attempts:
        message = "The server is slow to answer; still trying…"
    state: dict[str, Any] = {
        "status": status.value,
        "title": _TITLES[status],
        "message": message,
        "reason": join_request.reason,
        "version": join_request.version,
        "room_name": join_request.room.display_name,
        "display_name": join_request.display_name,
        "can_cancel": status in (Status.PROVISIONING, Status.WAITING),
        "can_retry": status == Status.FAILED,
        "session": None,
        "call_url": None,
    }
    if status == Status.JOINED and join_request.guest is not None:
        session = guest_account_session(join_request.guest)
        via = settings.MAIN_HS_SERVER_NAME
        state["session"] = {
            "homeserverUrl": session.homeserver_url,
            "userId": session.user_id,
            "deviceId": session.device_id,
            "accessToken": session.access_token,
            "roomId": join_request.room.room_id,
            "via": [via],
        }
        state["call_url"] = settings.CALL_URL_TEMPLATE.format(
            room_id=quote(join_request.room.room_id, safe=""),
            via=quote(via, safe=""),
            homeserver=quote(session.homeserver_url, safe=""),
        )
    return state
