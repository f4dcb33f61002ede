"""The waiting notice's pieces without a homeserver: numbering, its text, what is stored of a
push, what a reaction or command means and who may make one. The flows run against the real
pair in tests/integration/test_notices.py."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone, translation

from matrix import RoomEvent
from rooms.models import CallRoom, JoinRequest, MembershipEvent, WaitingNotice
from rooms.notices import (
    Decision,
    NoticeRoomRefused,
    Waiting,
    command_decision,
    command_room,
    moderator_event_apply,
    moderator_event_rows,
    notice_language,
    notice_room_set,
    notice_text,
    numbered,
    reaction_decision,
    waiting_notice_refresh,
    waiting_notice_soon,
)
from tests.unit.conftest import MODERATOR

pytestmark = pytest.mark.django_db

Status = JoinRequest.Status
NOTICE = "$notice"
OUTSIDER = "@max:main.test"


def test_guests_keep_their_numbers_and_a_number_is_never_given_twice() -> None:
    shown = [[1, 10], [2, 11], [3, 12]]

    assert numbered([], [10, 11]) == [[1, 10], [2, 11]]
    assert numbered(shown, [10, 12, 13]) == [[1, 10], [3, 12], [4, 13]]
    assert numbered(shown, [13]) == [[4, 13]]


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("!guests let in 2", Decision(deny=False, numbers=(2,))),
        ("!Guests Let In 2, 5", Decision(deny=False, numbers=(2, 5))),
        ("!guests let in all", Decision(deny=False, numbers=None)),
        ("!guests deny 3", Decision(deny=True, numbers=(3,))),
        (
            "!guests deny 3 Full room,  sorry",
            Decision(deny=True, numbers=(3,), reason="Full room,  sorry"),
        ),
        ("!guests", None),
        ("!guests let in", None),
        ("!guests let in 12", Decision(deny=False, numbers=(12,))),
        ("!guests let in Alice Smith", Decision(deny=False, numbers=(), name="Alice Smith")),
        ("!guests deny Alice", None),
        ("!guests dance", None),
    ],
)
def test_commands_mean_what_the_help_says(text: str, decision: Decision | None) -> None:
    assert command_decision(text) == decision


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("!guests Team call: let in 2", ("Team call", "!guests let in 2")),
        (
            "!guests !AbC:main.test: deny 2 Sorry: full",
            ("!AbC:main.test", "!guests deny 2 Sorry: full"),
        ),
        ("!guests deny 2 Reason: none", ("", "!guests deny 2 Reason: none")),
        ("!guests let in 2", ("", "!guests let in 2")),
    ],
)
def test_a_command_may_name_its_call_room_before_a_colon(text: str, named: tuple[str, str]) -> None:
    assert command_room(text) == named


@pytest.mark.parametrize(
    ("key", "decision"),
    [
        ("2\ufe0f\u20e3", Decision(deny=False, numbers=(2,))),
        ("2\u20e3", Decision(deny=False, numbers=(2,))),  # some clients leave out U+FE0F
        ("\u2705", Decision(deny=False, numbers=None)),
        ("\U0001f44d", None),
        ("0\ufe0f\u20e3", None),
    ],
)
def test_reactions_are_a_guests_number_or_everyone(key: str, decision: Decision | None) -> None:
    assert reaction_decision(key) == decision


def test_the_notice_numbers_the_guests_escapes_their_names_and_links_the_dashboard(
    room: CallRoom,
) -> None:
    now = timezone.now()
    waiting = [
        Waiting(7, "<b>Eve</b> (Guest)", now - timedelta(minutes=3)),
        Waiting(8, "Bob (Guest)", now),
    ]

    text, html = notice_text(room, [[2, 7], [3, 8]], waiting, now)

    assert text.splitlines()[:3] == [
        "2 guests are waiting to join Team call:",
        "2. <b>Eve</b> (Guest) (waiting 3 minutes)",
        "3. Bob (Guest) (just now)",
    ]
    assert f"{settings.PUBLIC_URL}/moderator/rooms/{room.pk}" in text
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html and "<b>Eve</b>" not in html
    assert f'<a href="{settings.PUBLIC_URL}/moderator/rooms/{room.pk}">' in html


def test_the_closed_notice_says_nobody_waits(room: CallRoom) -> None:
    text, _ = notice_text(room, [], [], timezone.now())

    assert text.startswith("Nobody is waiting to join Team call any more.")


def event(event_type: str, content: dict[str, object], *, room_id: str, sender: str) -> RoomEvent:
    return RoomEvent(
        event_id=f"${uuid.uuid4().hex}",
        room_id=room_id,
        type=event_type,
        sender=sender,
        state_key=None,
        content=content,
    )


def reaction(room: CallRoom, key: str, *, to: str = NOTICE, sender: str = MODERATOR) -> RoomEvent:
    relation = {"rel_type": "m.annotation", "event_id": to, "key": key}
    return event("m.reaction", {"m.relates_to": relation}, room_id=room.room_id, sender=sender)


def message(room_id: str, body: str, *, sender: str = MODERATOR) -> RoomEvent:
    return event(
        "m.room.message", {"msgtype": "m.text", "body": body}, room_id=room_id, sender=sender
    )


def test_only_reactions_to_an_open_notice_and_commands_in_a_call_room_are_kept(
    room: CallRoom,
) -> None:
    WaitingNotice.objects.create(room=room, event_id=NOTICE)
    bot = f"@{settings.MAIN_BOT_LOCALPART}:{settings.MAIN_HS_SERVER_NAME}"
    kept = [reaction(room, "1\ufe0f\u20e3"), message(room.room_id, "  !guests let in 1")]
    dropped = [
        reaction(room, "1\ufe0f\u20e3", to="$other"),
        message(room.room_id, "hello, !guests"),
        message("!elsewhere", "!guests let in 1"),
        message(room.room_id, "!guests let in 1", sender=bot),
        event("m.room.message", {"body": 3}, room_id=room.room_id, sender=MODERATOR),
    ]

    rows = moderator_event_rows([*dropped, *kept])

    assert [(row.event_id, row.relates_to, row.body) for row in rows] == [
        (kept[0].event_id, NOTICE, "1\ufe0f\u20e3"),
        (kept[1].event_id, "", "!guests let in 1"),
    ]


@pytest.fixture
def two_waiting(room: CallRoom) -> list[JoinRequest]:
    requests = [
        JoinRequest.objects.create(
            public_id=uuid.uuid4(),
            room=room,
            user_id=f"@guest_{name.lower()}:guest.test",
            display_name=name,
            status=Status.WAITING,
        )
        for name in ("Ann", "Bob")
    ]
    WaitingNotice.objects.create(
        room=room, event_id=NOTICE, guests=[[1, requests[0].pk], [2, requests[1].pk]]
    )
    return requests


def stored(room: CallRoom, event_type: str, body: str, sender: str) -> MembershipEvent:
    return MembershipEvent.objects.create(
        event_id=f"${uuid.uuid4().hex}",
        room_id=room.room_id,
        type=event_type,
        user_id=sender,
        sender=sender,
        relates_to=NOTICE if event_type == "m.reaction" else "",
        body=body,
    )


def test_a_moderators_reaction_claims_that_guest_for_them(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    moderator_event_apply(stored(room, "m.reaction", "2\ufe0f\u20e3", MODERATOR))

    ann, bob = (JoinRequest.objects.get(pk=r.pk) for r in two_waiting)
    assert (ann.decided_by, bob.decided_by) == ("", MODERATOR)


def test_letting_everyone_in_claims_everyone_listed(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    moderator_event_apply(stored(room, "m.room.message", "!guests let in all", MODERATOR))

    assert {r.decided_by for r in JoinRequest.objects.all()} == {MODERATOR}


@pytest.mark.parametrize(
    ("event_type", "body"),
    [
        ("m.reaction", "1\ufe0f\u20e3"),
        ("m.reaction", "\u2705"),
        ("m.room.message", "!guests let in all"),
    ],
)
def test_someone_without_power_claims_nothing(
    room: CallRoom, two_waiting: list[JoinRequest], event_type: str, body: str
) -> None:
    moderator_event_apply(stored(room, event_type, body, OUTSIDER))

    assert {r.decided_by for r in JoinRequest.objects.all()} == {""}


def test_a_power_level_that_may_not_kick_may_not_deny(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    CallRoom.objects.filter(pk=room.pk).update(
        power_levels={"invite": 0, "kick": 50, "users": {OUTSIDER: 10}}
    )
    room.refresh_from_db()

    moderator_event_apply(stored(room, "m.room.message", "!guests deny 1", OUTSIDER))
    moderator_event_apply(stored(room, "m.room.message", "!guests let in 2", OUTSIDER))

    ann, bob = (JoinRequest.objects.get(pk=r.pk) for r in two_waiting)
    assert (ann.decided_by, bob.decided_by) == ("", OUTSIDER)


def test_a_number_the_notice_does_not_show_claims_nobody(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    moderator_event_apply(stored(room, "m.room.message", "!guests let in 7", MODERATOR))

    assert {r.decided_by for r in JoinRequest.objects.all()} == {""}


def test_a_reaction_to_a_notice_closed_since_claims_nobody(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    WaitingNotice.objects.filter(room=room).update(event_id="$a_newer_notice")

    moderator_event_apply(stored(room, "m.reaction", "\u2705", MODERATOR))

    assert {r.decided_by for r in JoinRequest.objects.all()} == {""}


def test_a_refresh_right_after_an_edit_waits_its_turn_without_calling_main(
    room: CallRoom, two_waiting: list[JoinRequest], django_capture_on_commit_callbacks: Any
) -> None:
    WaitingNotice.objects.filter(room=room).update(sent_at=timezone.now())

    with django_capture_on_commit_callbacks() as queued:
        outcome = waiting_notice_refresh(room)

    notice = WaitingNotice.objects.get(room=room)
    assert outcome == "later"
    assert notice.due_at is not None and notice.busy_until is None
    assert len(queued) == 1  # one refresh queued for when the interval is over


def test_changes_of_the_queue_queue_one_refresh_until_it_runs(
    room: CallRoom, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as queued:
        for _ in range(5):
            waiting_notice_soon(room.room_id)
        waiting_notice_soon("!not_a_call_room")

    assert len(queued) == 1


def test_numbers_past_nine_are_reached_by_command_and_the_notice_says_how(
    room: CallRoom,
) -> None:
    now = timezone.now()
    waiting = [Waiting(pk, f"Guest {pk}", now) for pk in range(1, 12)]
    guests = [[pk, pk] for pk in range(1, 12)]

    text, html = notice_text(room, guests, waiting, now)
    few, _ = notice_text(room, guests[:9], waiting[:9], now)

    assert '"!guests let in 10" or "!guests let in <name>"' in text
    assert "!guests let in 10" in html
    assert "Numbers past 9" not in few


def test_the_notice_is_in_the_rooms_language(room: CallRoom) -> None:
    room.notice_language = "de"
    now = timezone.now()

    with translation.override(notice_language(room)):
        text, _ = notice_text(room, [[1, 7]], [Waiting(7, "Eva", now)], now)

    assert text.startswith("1 Gast wartet darauf, Team call beizutreten:")


def guest_in(room: CallRoom, name: str) -> JoinRequest:
    return JoinRequest.objects.create(
        public_id=uuid.uuid4(),
        room=room,
        user_id=f"@guest_{uuid.uuid4().hex[:8]}:guest.test",
        display_name=name,
        status=Status.WAITING,
    )


def test_a_command_by_name_lets_in_the_one_guest_so_called(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    ann_b = guest_in(room, "Ann Berg")
    WaitingNotice.objects.filter(room=room).update(
        guests=[[1, two_waiting[0].pk], [2, two_waiting[1].pk], [12, ann_b.pk]]
    )

    moderator_event_apply(stored(room, "m.room.message", "!guests let in an", MODERATOR))
    moderator_event_apply(stored(room, "m.room.message", "!guests let in bob", MODERATOR))
    moderator_event_apply(stored(room, "m.room.message", "!guests let in Ann Berg", MODERATOR))

    ann, bob = (JoinRequest.objects.get(pk=r.pk) for r in two_waiting)
    assert (ann.decided_by, bob.decided_by) == ("", MODERATOR)  # "an": Ann or Ann Berg?
    assert JoinRequest.objects.get(pk=ann_b.pk).decided_by == MODERATOR


def test_a_command_written_before_the_open_notice_was_posted_claims_nobody(
    room: CallRoom, two_waiting: list[JoinRequest]
) -> None:
    WaitingNotice.objects.filter(room=room).update(opened_ts=2_000)
    early = stored(room, "m.room.message", "!guests let in 1", MODERATOR)
    early.origin_server_ts = 1_999
    late = stored(room, "m.room.message", "!guests let in 2", MODERATOR)
    late.origin_server_ts = 2_001

    moderator_event_apply(early)
    moderator_event_apply(late)

    ann, bob = (JoinRequest.objects.get(pk=r.pk) for r in two_waiting)
    assert (ann.decided_by, bob.decided_by) == ("", MODERATOR)


MODS = "!moderators:main.test"


@pytest.fixture
def two_rooms_one_notice_room(make_room: Any) -> tuple[CallRoom, CallRoom]:
    """Two call rooms posting in one moderators' room, one guest waiting in each, as
    number 1 of each notice."""
    team = make_room(room_id="!team:main.test", name="Team call", notice_room_id=MODS)
    review = make_room(room_id="!review:main.test", name="Review", notice_room_id=MODS)
    for room, name in ((team, "Ann"), (review, "Bob")):
        guest = guest_in(room, name)
        WaitingNotice.objects.create(room=room, event_id=f"$notice_{name}", guests=[[1, guest.pk]])
    return team, review


def in_moderators_room(
    body: str, *, relates_to: str = "", event_type: str = "m.room.message"
) -> MembershipEvent:
    return MembershipEvent.objects.create(
        event_id=f"${uuid.uuid4().hex}",
        room_id=MODS,
        type=event_type,
        user_id=MODERATOR,
        sender=MODERATOR,
        relates_to=relates_to,
        body=body,
    )


def decided() -> dict[str, str]:
    return dict(JoinRequest.objects.values_list("display_name", "decided_by"))


def test_in_a_shared_moderators_room_a_reaction_acts_on_its_notices_call_room(
    two_rooms_one_notice_room: tuple[CallRoom, CallRoom],
) -> None:
    moderator_event_apply(
        in_moderators_room("1\ufe0f\u20e3", relates_to="$notice_Bob", event_type="m.reaction")
    )

    assert decided() == {"Ann": "", "Bob": MODERATOR}


def test_in_a_shared_moderators_room_a_command_must_name_the_room_or_reply_to_its_notice(
    two_rooms_one_notice_room: tuple[CallRoom, CallRoom],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as queued:
        moderator_event_apply(in_moderators_room("!guests let in 1"))
    assert decided() == {"Ann": "", "Bob": ""}
    assert len(queued) == 1  # the answer saying how to name the room

    moderator_event_apply(in_moderators_room("!guests review: let in 1"))
    assert decided() == {"Ann": "", "Bob": MODERATOR}

    moderator_event_apply(in_moderators_room("!guests let in 1", relates_to="$notice_Ann"))
    assert decided() == {"Ann": MODERATOR, "Bob": MODERATOR}


def test_a_moderators_room_may_serve_several_call_rooms_but_not_be_one(
    two_rooms_one_notice_room: tuple[CallRoom, CallRoom], make_room: Any
) -> None:
    team, _ = two_rooms_one_notice_room
    third = make_room(room_id="!third:main.test", name="Third")

    with pytest.raises(NoticeRoomRefused):
        notice_room_set(third, team.room_id)


def test_a_command_replying_with_the_quoting_fallback_is_read(room: CallRoom) -> None:
    WaitingNotice.objects.create(room=room, event_id=NOTICE)
    content: dict[str, object] = {
        "msgtype": "m.text",
        "body": "> <@bot:main.test> 2 guests are waiting\n\n!guests let in 2",
        "m.relates_to": {"m.in_reply_to": {"event_id": NOTICE}},
    }

    (row,) = moderator_event_rows(
        [event("m.room.message", content, room_id=room.room_id, sender=MODERATOR)]
    )

    assert (row.relates_to, row.body) == (NOTICE, "!guests let in 2")


def test_a_call_room_leaving_a_shared_moderators_room_refreshes_the_notice_it_leaves_behind(
    two_rooms_one_notice_room: tuple[CallRoom, CallRoom],
    django_capture_on_commit_callbacks: Any,
) -> None:
    team, _ = two_rooms_one_notice_room

    with django_capture_on_commit_callbacks() as queued:
        assert notice_room_set(team, "")

    assert len(queued) == 2  # Team's notice moves; Review's need not name its room any more
    assert WaitingNotice.objects.filter(due_at__isnull=False).count() == 2
