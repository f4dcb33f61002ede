"""What the lobby needs to host the call: Element Call's address, the focus, and the assets to
fetch while the guest waits (DESIGN "The call"; the host itself is frontend/call-host.js)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from rooms.models import CallRoom, JoinRequest

# EC's index.html names its hashed entry script, module preloads and style sheet.
_ASSET = re.compile(r'(?:src|href)="\./(assets/[^"]+)"')


def call_page_context(room: CallRoom) -> dict[str, Any]:
    """The lobby template's ``call``: the mode, and in embedded mode where EC lives, the RTC
    transports it will ask for, EC's start-up files, which the lobby prefetches so that
    "let in" does not wait for them (they are long-cached: hashed names), and whether the
    room encrypts (the host then loads its crypto while the guest waits)."""
    if settings.CALL_MODE != "embedded":
        return {"mode": "link"}
    index = Path(settings.CALL_BUILD_DIR) / "index.html"
    return {
        "mode": "embedded",
        "url": settings.CALL_INDEX_URL,
        "transports": json.dumps(settings.RTC_TRANSPORTS),
        "encrypted": room.encrypted,
        "prefetch": [
            f"{settings.CALL_ORIGIN}/call/{asset}"
            for asset in _startup_assets(index, index.stat().st_mtime_ns)
        ],
    }


@cache
def _startup_assets(index: Path, mtime_ns: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_ASSET.findall(index.read_text(encoding="utf-8"))))


def call_preload(join_request: JoinRequest) -> dict[str, str] | None:
    """Who the call will be for, while the guest waits, so that the lobby can load Element
    Call before "let in" (``preload``: it negotiates and waits for the host's join). Only
    the ids of the guest's account and device, which name no secret: the access token comes
    with the session, once the guest is let in. None in link mode, before the guest's pass
    is made and once the request is no longer open."""
    guest = join_request.guest
    if (
        settings.CALL_MODE != "embedded"
        or join_request.status not in JoinRequest.OPEN
        or guest is None
        or not guest.device_id
    ):
        return None
    return {
        "homeserverUrl": settings.GUEST_HS_PUBLIC_URL,
        "userId": guest.user_id,
        "deviceId": guest.device_id,
        "roomId": join_request.room.room_id,
    }
