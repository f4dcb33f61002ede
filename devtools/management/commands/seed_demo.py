"""``manage.py seed_demo``: a moderator, a call room and an invite link on the local pair.

Run by ``make run`` so a newcomer sees the whole flow at once. Idempotent: the moderator and
the room are made once (kept in the pair's ``demo.json``); each run prints a fresh link.

The room is made as a call room should be: the current room version, join rule knock, and
guests (level 0) allowed to send their call membership (CALL-LAB §6). A demo room made before
that rule is mended by its moderator (the bot's level 50 is not enough to change permissions).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devtools.localpair import LocalPair, configured_pair
from matrix import (
    CALL_MEMBER_EVENT,
    Forbidden,
    MatrixClient,
    NotFound,
    UserInUse,
    register_with_shared_secret,
)
from rooms.call_levels import (
    POWER_LEVELS_EVENT,
    call_level,
    power_levels_letting_guests_join,
)
from rooms.call_rooms import call_room_register
from rooms.invite_links import invite_link_create, invite_url
from rooms.models import CallRoom
from rooms.qr_codes import qr_text
from rooms.selectors import call_room_problems

MODERATOR = "moderator"
#: The newest stable room version (Synapse's default is older): creators outrank everyone.
ROOM_VERSION = "12"


class Command(BaseCommand):
    help = "Seed the local homeserver pair with a demo moderator, call room and invite link."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        pair = configured_pair()
        demo_file = pair.directory / "demo.json"
        demo: dict[str, str] = json.loads(demo_file.read_text()) if demo_file.exists() else {}
        password = demo.setdefault("moderator_password", secrets.token_urlsafe(12))
        moderator = _moderator(pair, password)
        with MatrixClient(base_url=pair.main.client_url, access_token=moderator) as client:
            room_id = demo.get("room_id")
            if not room_id or not _bot_in_room(client, room_id, pair):
                room_id = _create_room(pair, client)
            _let_guests_join_call(client, room_id)
            demo["room_id"] = room_id
            demo_file.write_text(json.dumps(demo, indent=2))
            client.logout()
        user_id = f"@{MODERATOR}:{pair.main.server_name}"
        call_room = call_room_register(room=room_id, registered_by=user_id)
        if call_room.status != CallRoom.Status.READY:
            raise CommandError("; ".join(call_room_problems(call_room)))
        url = invite_url(invite_link_create(room=call_room, created_by=user_id, label="demo").token)
        self.stdout.write(qr_text(url))
        self.stdout.write(
            f"Demo call room: {call_room} ({room_id})\n"
            f"Invite link for guests (open it in another browser or a private window):\n"
            f"  {url}\n"
            f"Moderator dashboard: {settings.PUBLIC_URL}/moderator/ — sign in with\n"
            f"  Matrix id {user_id}\n  password  {password}\n"
        )


def _moderator(pair: LocalPair, password: str) -> str:
    """An access token of the demo moderator, registering them on first use."""
    try:
        session = register_with_shared_secret(
            pair.main.client_url,
            shared_secret=pair.main.registration_shared_secret,
            username=MODERATOR,
            password=password,
            displayname="Demo Moderator",
        )
    except UserInUse:
        with MatrixClient(base_url=pair.main.client_url, access_token=None) as anonymous:
            session = anonymous.password_login(MODERATOR, password)
    return session.access_token


def _bot_in_room(client: MatrixClient, room_id: str, pair: LocalPair) -> bool:
    try:
        member = client.member(room_id, _bot_id(pair))
    except (Forbidden, NotFound):  # the pair was wiped, or the moderator left
        return False
    return member is not None and member.membership in ("invite", "join")


def _bot_id(pair: LocalPair) -> str:
    return f"@{pair.bot_localpart}:{pair.main.server_name}"


def _create_room(pair: LocalPair, client: MatrixClient) -> str:
    bot_id = _bot_id(pair)
    return client.create_room(
        name="Demo call",
        join_rule="knock",
        invite=[bot_id],
        power_level_users={bot_id: 50},
        power_level_events={CALL_MEMBER_EVENT: 0},
        room_version=ROOM_VERSION,
    )


def _let_guests_join_call(client: MatrixClient, room_id: str) -> None:
    """Mend a demo room made before guests were let into calls (the moderator may)."""
    if call_level(client.power_levels(room_id)).guests_may_join:
        return
    content = client.state_event(room_id, POWER_LEVELS_EVENT) or {}
    client.set_state(room_id, POWER_LEVELS_EVENT, power_levels_letting_guests_join(content))
