"""One guest through GuestGate, and one through the bare homeserver calls (the floor).

Every function returns a `Timing`: the step's total in milliseconds and marks (milliseconds
since the step started) that show where the time went. Marks named "(DB)" come from the
timestamps GuestGate's processes wrote (same machine, same clock); the others were seen by
this process.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from bench.proxy import guest_browser
from bench.stack import BenchError, wait_until
from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from guestgate import homeservers
from matrix import CALL_MEMBER_EVENT, Forbidden, MatrixClient, register_with_shared_secret
from rooms.call_rooms import call_room_register
from rooms.invite_links import invite_link_create
from rooms.models import CallRoom, JoinRequest, MembershipEvent
from rooms.moderation import join_request_approve

Status = JoinRequest.Status

#: How often the end of a step is looked for (the moderator dashboard's database, or main).
POLL_SECONDS = 0.005
STEP_TIMEOUT_SECONDS = 30.0
#: The floor's wait before retrying a join that lost the race (GuestGate's client waits
#: longer each time: matrix.client.JOIN_RACE_DELAYS).
FLOOR_RACE_RETRY_SECONDS = 0.01
_JOIN_RACE = ("duplicate auth_events", "not invited")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass(frozen=True)
class Scene:
    """The call room every guest of the run knocks on, and the clients of the floor."""

    pair: LocalPair
    web_url: str
    room_id: str
    invite_token: str
    moderator_id: str
    guest_appservice: MatrixClient  # GuestGate's appservice on the guest homeserver
    bot: MatrixClient  # GuestGate's bot on main (the main appservice's sender)
    floor_joiner: MatrixClient  # the guest appservice again, retrying a lost join race fast
    floor_races: RaceCount

    @property
    def via(self) -> list[str]:
        return [self.pair.main.server_name]


class RaceCount:
    """The floor's joins that lost the invite/join race (MATRIX-LAB P8), each retried after
    `FLOOR_RACE_RETRY_SECONDS`: the floor is as fast as the homeservers allow."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # the burst's guests join from many threads

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
        time.sleep(min(seconds, FLOOR_RACE_RETRY_SECONDS))


@dataclass
class Timing:
    total_ms: float
    marks: dict[str, float] = field(default_factory=dict)


def set_scene(
    pair: LocalPair,
    web_url: str,
    guest_appservice: MatrixClient,
    bot: MatrixClient,
    *,
    register: bool = True,
) -> Scene:
    """A moderator, their knock room with GuestGate's bot at PL 50, registered, and a link.

    ``register=False``: the room only, unknown to GuestGate (no link): a floor of its own, whose
    knocks do not become join requests when main pushes them."""
    moderator = register_with_shared_secret(
        pair.main.client_url,
        shared_secret=pair.main.registration_shared_secret,
        username=f"bench_moderator_{secrets.token_hex(4)}",
        password=secrets.token_urlsafe(16),
        displayname="Mona Moderator",
    )
    bot_id = homeservers.main_bot_user_id()
    with MatrixClient(base_url=moderator.homeserver_url, access_token=moderator.access_token) as m:
        room_id = m.create_room(
            name="Benchmark call",
            join_rule="knock",
            invite=[bot_id],
            power_level_users={bot_id: 50},
            power_level_events={CALL_MEMBER_EVENT: 0},  # guests may join the call
        )
    bot.join(room_id, via=[pair.main.server_name])
    invite_token = ""
    if register:
        call_room = call_room_register(room=room_id, registered_by=moderator.user_id)
        if call_room.status != CallRoom.Status.READY:
            raise BenchError(f"the benchmark room is not ready: {call_room.problems}")
        link = invite_link_create(room=call_room, created_by=moderator.user_id, label="benchmark")
        invite_token = link.token
    races = RaceCount()
    return Scene(
        pair=pair,
        web_url=web_url,
        room_id=room_id,
        invite_token=invite_token,
        moderator_id=moderator.user_id,
        guest_appservice=guest_appservice,
        bot=bot,
        floor_joiner=MatrixClient(
            base_url=pair.guest.client_url, access_token=pair.guest.as_token, sleep=races.sleep
        ),
        floor_races=races,
    )


# -- GuestGate -----------------------------------------------------------------------------


@dataclass
class GuestGateGuest:
    browser: GuestBrowser
    public_id: str
    user_id: str


def guestgate_knock(scene: Scene, name: str) -> tuple[Timing, GuestGateGuest]:
    """Step A through GuestGate: from the POST of the join form until the moderator's
    dashboard can show the knock (request ``waiting`` and the knock event recorded)."""
    browser = guest_browser(scene.web_url)
    page = browser.open_invite(scene.invite_token)
    csrf = CSRF.search(page.text)
    if csrf is None:
        raise BenchError(f"no form on the join page ({page.status_code})")

    start, wall = time.perf_counter(), time.time()
    answer = browser.http.post(
        f"/j/{scene.invite_token}",
        data={"csrfmiddlewaretoken": csrf.group(1), "display_name": name},
    )
    posted = time.perf_counter()
    if answer.status_code != 302:
        raise BenchError(f"the join form answered {answer.status_code}: {answer.text[:300]}")
    browser.lobby_path = answer.headers["location"]
    public_id = browser.lobby_path.rstrip("/").rsplit("/", 1)[-1]
    request = JoinRequest.objects.filter(public_id=public_id)
    user_id = request.values_list("user_id", flat=True).get()
    knock = MembershipEvent.objects.filter(
        room_id=scene.room_id, user_id=user_id, membership="knock"
    )
    seen: dict[str, float] = {}
    # One raw query per look, not the ORM's two: the CPU each look takes is taken from
    # GuestGate's processes while they work.
    look = _dashboard_look(request.values_list("pk", flat=True).get(), scene.room_id, user_id)

    def on_dashboard() -> bool:
        status, knocked = look()
        if status not in (Status.PROVISIONING, Status.WAITING):
            raise BenchError(f"{user_id}: join request became {status!r}")
        now = time.perf_counter()
        if status == Status.WAITING:
            seen.setdefault("waiting", now)
        if "knock" not in seen and knocked:
            seen["knock"] = now
        return len(seen) == 2

    end = wait_until(
        on_dashboard,
        what=f"{user_id} on the dashboard",
        timeout=STEP_TIMEOUT_SECONDS,
        every=POLL_SECONDS,
    )

    def ms(t: float) -> float:
        return (t - start) * 1000

    row = request.select_related("guest").get()
    account = row.guest
    event = knock.order_by("received_at").first()
    marks = {"form POST answered (302)": ms(posted)}
    marks["join request created (DB)"] = _db_ms(row.created_at.timestamp(), wall)
    if account is not None and account.registered_at is not None:
        registered = _db_ms(account.registered_at.timestamp(), wall)
        if registered >= 0:
            marks["account registered (DB)"] = registered
        else:  # a spare account (accounts/spares.py), registered before the guest came
            marks["spare accounts taken (count)"] = 1.0
    if event is not None:
        marks["knock push recorded (DB)"] = _db_ms(event.received_at.timestamp(), wall)
    marks["status waiting (DB)"] = _db_ms(row.updated_at.timestamp(), wall)
    marks["waiting seen by poll"] = ms(seen["waiting"])
    marks["knock event seen by poll"] = ms(seen["knock"])
    if row.attempts:
        marks["homeserver retries"] = float(row.attempts)
    return Timing(total_ms=ms(end), marks=marks), GuestGateGuest(browser, public_id, user_id)


def _dashboard_look(
    join_request_pk: int, room_id: str, user_id: str
) -> Callable[[], tuple[str, bool]]:
    """What the moderator's dashboard would show of this request: its status, and whether
    main's push of the knock was recorded."""
    events, requests = MembershipEvent._meta.db_table, JoinRequest._meta.db_table
    knocked = f"SELECT 1 FROM {events} WHERE room_id = %s AND user_id = %s AND membership = %s"  # noqa: S608 (table names are the models')
    sql = f"SELECT status, EXISTS ({knocked}) FROM {requests} WHERE id = %s"  # noqa: S608

    def look() -> tuple[str, bool]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [room_id, user_id, "knock", join_request_pk])
            status, knocked = cursor.fetchone()
        return str(status), bool(knocked)

    return look


def guestgate_approve(scene: Scene, guest: GuestGateGuest) -> Timing:
    """Step B through GuestGate: from ``join_request_approve`` until the guest's lobby (its
    long poll, already waiting at the server as the page's would be) says ``joined``."""
    first = guest.browser.status()
    if first["status"] != Status.WAITING:
        raise BenchError(f"{guest.user_id}: lobby shows {first['status']!r} before approval")
    told: list[float] = []
    failed: list[BaseException] = []

    def follow_lobby() -> None:
        try:
            state: dict[str, Any] = first
            while state["status"] != Status.JOINED:
                if state["status"] not in JoinRequest.OPEN:
                    raise BenchError(f"{guest.user_id}: lobby shows {state['status']!r}")
                state = guest.browser.status(since=state["version"])
            told.append(time.perf_counter())
        except BaseException as error:  # reported by the main thread
            failed.append(error)

    lobby = threading.Thread(target=follow_lobby, name="lobby-long-poll", daemon=True)
    lobby.start()
    time.sleep(0.3)  # the long poll is now waiting at the server
    join_request = JoinRequest.objects.select_related("room").get(public_id=guest.public_id)
    request = JoinRequest.objects.filter(public_id=guest.public_id)
    seen: dict[str, float] = {}

    start = time.perf_counter()
    join_request_approve(join_request, moderator=scene.moderator_id)
    approved = time.perf_counter()

    def told_joined() -> bool:
        if failed:
            raise BenchError(f"{guest.user_id}: following the lobby failed") from failed[0]
        if Status.JOINED not in seen:
            status = request.values_list("status", flat=True).get()
            seen.setdefault(status, time.perf_counter())
        return bool(told)

    wait_until(
        told_joined,
        what=f"{guest.user_id} told",
        timeout=STEP_TIMEOUT_SECONDS,
        every=POLL_SECONDS,
    )
    lobby.join(timeout=5)

    def ms(t: float) -> float:
        return (t - start) * 1000

    marks = {"approve returned (bot invited)": ms(approved)}
    if Status.JOINING in seen:
        marks["status joining seen (task started)"] = ms(seen[Status.JOINING])
    if Status.JOINED in seen:
        marks["status joined seen by poll"] = ms(seen[Status.JOINED])
    marks["lobby long poll says joined"] = ms(told[0])
    return Timing(total_ms=ms(told[0]), marks=marks)


# -- The floor: the bare homeserver calls ------------------------------------------------------


@dataclass
class FloorGuest:
    user_id: str


def floor_knock(scene: Scene, name: str) -> tuple[Timing, FloorGuest]:
    """Step A's floor: appservice register (inhibit_login), display name, appservice login
    (a device), knock with via, then until main's member state (as the bot) shows the knock."""
    localpart = f"{scene.pair.guest_user_prefix}floor{secrets.token_hex(8)}"
    user_id = f"@{localpart}:{scene.pair.guest.server_name}"
    appservice = scene.guest_appservice
    guest = appservice.as_user(user_id)

    start, wall = time.perf_counter(), time.time()
    appservice.register_appservice_user(localpart)
    registered = time.perf_counter()
    guest.set_displayname(user_id, f"{name} (Guest)")
    named = time.perf_counter()
    appservice.login_appservice_user(
        user_id, device_id="BENCHFLOOR", initial_device_display_name="benchmark floor"
    )
    logged_in = time.perf_counter()
    guest.knock(scene.room_id, via=scene.via)
    knocked = time.perf_counter()
    end = _wait_membership(scene, user_id, "knock")

    def ms(t: float) -> float:
        return (t - start) * 1000

    marks = {
        "registered (inhibit_login)": ms(registered),
        "display name set": ms(named),
        "logged in (device)": ms(logged_in),
        "knock call returned": ms(knocked),
        "knock in main's state": ms(end),
    }
    pushed = _pushed_to_guestgate(scene, user_id, "knock")
    if pushed is not None:
        marks["(not counted) knock push recorded by GuestGate (DB)"] = _db_ms(pushed, wall)
    return Timing(total_ms=ms(end), marks=marks), FloorGuest(user_id)


def floor_approve(scene: Scene, guest: FloorGuest) -> Timing:
    """Step B's floor: the bot invites, the guest joins with via (through the guest
    appservice; a join that lost the invite/join race is retried after 10 ms), until main's
    member state shows the join."""
    joiner = scene.floor_joiner.as_user(guest.user_id)
    start, wall = time.perf_counter(), time.time()
    scene.bot.invite(scene.room_id, guest.user_id, reason="approved")
    invited = time.perf_counter()
    floor_join(scene, joiner, deadline=start + STEP_TIMEOUT_SECONDS)
    joined = time.perf_counter()
    end = _wait_membership(scene, guest.user_id, "join")

    def ms(t: float) -> float:
        return (t - start) * 1000

    marks = {
        "invite returned": ms(invited),
        "join call returned": ms(joined),
        "join in main's state": ms(end),
    }
    pushed = _pushed_to_guestgate(scene, guest.user_id, "join")
    if pushed is not None:
        marks["(not counted) join push recorded by GuestGate (DB)"] = _db_ms(pushed, wall)
    return Timing(total_ms=ms(end), marks=marks)


def floor_join(scene: Scene, joiner: MatrixClient, *, deadline: float) -> None:
    """Join as the guest (``joiner``: the guest appservice as them, sleeping through
    ``scene.floor_races``); a join that lost the invite/join race is retried after 10 ms."""
    while True:
        try:
            joiner.join(scene.room_id, via=scene.via)
            return
        except Forbidden as error:
            lost_race = any(marker in error.message.lower() for marker in _JOIN_RACE)
            if not lost_race or time.perf_counter() > deadline:
                raise
            scene.floor_races.sleep(FLOOR_RACE_RETRY_SECONDS)


def leave(scene: Scene, user_id: str) -> None:
    """The guest leaves again, so the next knock and join are "cold" (MATRIX-LAB P5)."""
    scene.guest_appservice.as_user(user_id).leave(scene.room_id)
    _wait_membership(scene, user_id, "leave", every=0.05)


def _wait_membership(
    scene: Scene, user_id: str, membership: str, every: float = POLL_SECONDS
) -> float:
    def shows() -> bool:
        member = scene.bot.member(scene.room_id, user_id)
        return member is not None and member.membership == membership

    return wait_until(
        shows,
        what=f"{membership} of {user_id} on main",
        timeout=STEP_TIMEOUT_SECONDS,
        every=every,
    )


def _pushed_to_guestgate(scene: Scene, user_id: str, membership: str) -> float | None:
    """When GuestGate's web server recorded main's push of this floor event (a timestamp):
    how much later the push path learns what main's state already shows."""
    events = MembershipEvent.objects.filter(
        room_id=scene.room_id, user_id=user_id, membership=membership
    )
    deadline = time.perf_counter() + 5
    while time.perf_counter() < deadline:
        received = events.values_list("received_at", flat=True).first()
        if received is not None:
            return received.timestamp()
        time.sleep(0.02)
    return None


def _db_ms(timestamp: float, wall_start: float) -> float:
    return (timestamp - wall_start) * 1000
