from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from guestgate.durations import DurationUnreadable, duration_parse
from rooms.invite_links import invite_link_create, invite_url
from rooms.models import CallRoom
from rooms.qr_codes import qr_text


class Command(BaseCommand):
    help = "Create an invite link to a registered call room and print it with its QR code."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room_id")
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--pre-approved",
            action="store_true",
            help="guests through this link are let in without a moderator",
        )
        parser.add_argument("--max-uses", type=int, default=None)
        parser.add_argument("--expires-in", default=None, help='e.g. "2h", "90m", "1d 12h"')
        parser.add_argument("--expires-in-hours", type=float, default=None)
        parser.add_argument("--by", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        room = CallRoom.objects.filter(room_id=options["room_id"]).first()
        if room is None:
            raise CommandError(f"{options['room_id']} is not registered (see register_room).")
        if options["max_uses"] is not None and options["max_uses"] < 1:
            raise CommandError("--max-uses must be 1 or more.")
        lifetime = _lifetime(options["expires_in"], options["expires_in_hours"])
        new = invite_link_create(
            room=room,
            created_by=options["by"],
            label=options["label"],
            pre_approved=options["pre_approved"],
            max_uses=options["max_uses"],
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
        url = invite_url(new.token)
        self.stdout.write(qr_text(url))
        self.stdout.write(f"Invite link (the links page shows it again): {url}")


def _lifetime(typed: str | None, hours: float | None) -> timedelta | None:
    if typed is None:
        return timedelta(hours=hours) if hours else None
    try:
        lifetime = duration_parse(typed)
    except DurationUnreadable:
        raise CommandError(
            f'--expires-in {typed!r}: give a duration such as "2h" or "1d 12h".'
        ) from None
    if not lifetime:
        raise CommandError("--expires-in must be longer than 0.")
    return lifetime
