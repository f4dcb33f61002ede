"""GuestGate's own sentences on rows become codes (rooms.messages): a join request's reason and
a call room's problems were stored in English and translated back by pattern on display.

The English templates below are frozen copies of what earlier versions stored.
"""

import re

from django.db import migrations, models

_GUEST = {
    "server_unavailable": (
        "The server is not answering at the moment, so your guest pass could not be "
        "finished. Please try again in a minute."
    ),
    "server_failed": "Something went wrong on the server (%(code)s). Please try again.",
    "banned_before": "You cannot join this call.",
}
_ROOM = {
    "bot_not_in_room": (
        "GuestGate's bot %(bot_id)s is not in the room. Invite it to the room "
        "(it joins by itself), then check again."
    ),
    "no_knock_version": (
        "The room is of version %(version)s, which does not support asking to "
        "join. Upgrade the room to version 7 or newer (in Element: /upgraderoom 12)."
    ),
    "not_knock_rule": (
        "The room's join rule is “%(join_rule)s”. Guests can only ask to join a room "
        "set to “Ask to join” (join rule knock)."
    ),
    "bot_may_not_invite": (
        "GuestGate's bot %(bot_id)s may not invite: give it power level %(level)s or more."
    ),
    "bot_may_not_kick": (
        "GuestGate's bot %(bot_id)s may not remove people (needed to deny a "
        "guest): give it power level %(level)s or more."
    ),
}


def _match(template, text):
    pieces = re.split(r"%\((\w+)\)s", template)
    pattern = "".join(
        re.escape(piece) if index % 2 == 0 else f"(?P<{piece}>.+?)"
        for index, piece in enumerate(pieces)
    )
    found = re.fullmatch(pattern, text, re.DOTALL)
    return None if found is None else found.groupdict()


def _coded(templates, text):
    for code, template in templates.items():
        values = _match(template, text)
        if values is not None:
            return code, values
    return None, None


def to_codes(apps, schema_editor):
    JoinRequest = apps.get_model("rooms", "JoinRequest")
    for request in JoinRequest.objects.filter(status__in=["failed", "banned"], decided_by=""):
        code, values = _coded(_GUEST, request.reason)
        if code is not None:
            request.reason_code = code
            request.reason = values.get("code", "")
            request.save(update_fields=["reason", "reason_code"])
    CallRoom = apps.get_model("rooms", "CallRoom")
    for room in CallRoom.objects.exclude(problems=[]):
        problems = []
        for problem in room.problems:
            code, values = _coded(_ROOM, problem) if isinstance(problem, str) else (None, None)
            problems.append(problem if code is None else {"code": code, "values": values})
        room.problems = problems
        room.save(update_fields=["problems"])


def to_sentences(apps, schema_editor):
    JoinRequest = apps.get_model("rooms", "JoinRequest")
    for request in JoinRequest.objects.exclude(reason_code=""):
        request.reason = _GUEST[request.reason_code] % {"code": request.reason}
        request.save(update_fields=["reason"])
    CallRoom = apps.get_model("rooms", "CallRoom")
    for room in CallRoom.objects.exclude(problems=[]):
        room.problems = [
            _ROOM[problem["code"]] % problem["values"] if isinstance(problem, dict) else problem
            for problem in room.problems
        ]
        room.save(update_fields=["problems"])


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0002_join_request_change_notify"),
    ]

    operations = [
        migrations.AddField(
            model_name="joinrequest",
            name="reason_code",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.RunPython(to_codes, to_sentences),
    ]
