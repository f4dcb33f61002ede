from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from guestgate.errors import GuestGateError
from matrix import MatrixError
from rooms.call_rooms import call_room_fix_join_rule, call_room_register
from rooms.models import CallRoom
from rooms.selectors import call_room_problems


class Command(BaseCommand):
    help = "Register a room of the main homeserver as a call room guests may knock on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="room id (!…) or address (#…:server)")
        parser.add_argument("--by", default="admin", help="who registers it (for the record)")
        parser.add_argument(
            "--fix", action="store_true", help="set the join rule to knock if the bot may"
        )

    def handle(self, *args: Any, room: str, by: str, fix: bool, **options: Any) -> None:
        try:
            call_room = call_room_register(room=room, registered_by=by)
            if fix and call_room.status == CallRoom.Status.PROBLEM:
                call_room = call_room_fix_join_rule(call_room)
        except (GuestGateError, MatrixError) as error:
            raise CommandError(error.message) from None
        if call_room.status == CallRoom.Status.READY:
            self.stdout.write(self.style.SUCCESS(f"{call_room} ({call_room.room_id}) is ready."))
            return
        for problem in call_room_problems(call_room):
            self.stderr.write(f"- {problem}")
        raise CommandError(f"{call_room.room_id} is registered but not ready for guests.")
