"""Burst: N guests arrive at one call room at the same moment, then all are let in at once.

DESIGN.md, "Performance targets": 500 guests arriving at one room within a minute, every one
knocked and let in, none lost, no 429 reaching a guest. (MATRIX-LAB section 4, "Burst", has
the homeservers' own figures for 50 guests.) Each phase has a fresh room.

GuestGate: N threads, each a guest's browser (devtools/guestbrowser.py, real HTTP), open
the invite link; then all submit the join form at the same moment. Measured until the
moderator's queue holds all N (every join request ``waiting``, polled in the database every
50 ms). Then ``join_requests_approve_all`` (the dashboard's "let everyone in", called here as
its view does) until every request is ``joined`` (database); a few lobbies follow their long poll
meanwhile, and at the end every guest's lobby is asked once what it shows.

Floor (a room unknown to GuestGate): N threads, each a bare guest: appservice register
(inhibit_login) + display name + appservice login + knock, all starting at the same moment,
until main's member list (read as the bot) shows all N knocks. Then the bot invites all, one
after another, and each guest joins as soon as its own invite returned, until main shows N
joins. Same concurrency as GuestGate's guests: one thread per guest. For reference, a third
phase does the same with the bot's invites sent from ``--burst-parallel-invites`` threads
(what approve-all could gain by not inviting one guest after another).

Then, on both sides, every let-in guest joins the call at the same moment: its call member
state event (``org.matrix.msc3401.call.member``, as Element Call sends it) with its own session
on the guest homeserver. GuestGate: until its database has every guest's device in the call
(main pushed the events, the worker applied them). Floor: until main's room state (read as
the bot) has them all.
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from django.db.models import Count

from bench import measure
from bench.proxy import guest_browser
from bench.report import Outcome, median, p95, table
from bench.runner import environment_now, load_average, write_json
from bench.stack import BenchError, Stack
from devtools.guestbrowser import GuestBrowser
from matrix import CALL_MEMBER_EVENT, Forbidden, MatrixClient, MatrixError, Session
from rooms.models import AuditEntry, CallPresence, CallRoom, JoinRequest, MembershipEvent
from rooms.moderation import join_requests_approve_all

Status = JoinRequest.Status

POLL_SECONDS = 0.05
MAIN_POLL_SECONDS = 0.1  # the floor reads main's member list, which grows with N
SAMPLED_LOBBIES = 5
SETUP_THREADS = 16
PROGRESS_SECONDS = 5.0


def phase_timeout(guests: int) -> float:
    """How long one phase may take before the benchmark stops waiting (and reports it)."""
    return 120.0 + 0.6 * guests


# -- GuestGate ---------------------------------------------------------------------------------


@dataclass
class Guest:
    """One guest's browser in the burst, and what it saw."""

    number: int
    browser: GuestBrowser
    csrf: str = ""
    status_code: int | None = None
    answered: float | None = None  # perf_counter()
    error: str = ""
    public_id: str = ""
    lobby_status: str = ""  # what the lobby said when asked at the end
    session: dict[str, Any] | None = None  # the lobby's session, once let in

    @property
    def in_lobby(self) -> bool:
        return self.status_code == 302 and bool(self.public_id)


@dataclass
class GuestGateBurst:
    guests: list[Guest]
    started: float
    marks_s: dict[str, float] = field(default_factory=dict)  # since the phase's start
    knock_times_s: list[float] = field(default_factory=list)  # per guest, from the audit
    join_times_s: list[float] = field(default_factory=list)
    approval_gaps_s: list[float] = field(default_factory=list)  # between approvals (audit)
    lobby_told_s: list[float] = field(default_factory=list)
    lobby_failures: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # at the end
    attempts: int = 0  # homeserver retries recorded on the requests
    approve_all: str = ""
    worker_retries: int = 0
    worker_rate_limited: int = 0
    calls: CallPhase | None = None
    incomplete: list[str] = field(default_factory=list)


def _guestgate(
    stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, n: int
) -> GuestGateBurst:
    scene = measure.set_scene(stack.pair, stack.web_url, guest_appservice, bot)
    room = CallRoom.objects.get(room_id=scene.room_id)
    print(
        f"  GuestGate: room {scene.room_id}; {n} guests, each from an address of its own "
        f"through the trusted proxy at {stack.proxy_url}, open the invite link",
        flush=True,
    )
    guests = [Guest(number, guest_browser(stack.proxy_url)) for number in range(1, n + 1)]

    def open_link(guest: Guest) -> None:
        page = guest.browser.open_invite(scene.invite_token)
        found = measure.CSRF.search(page.text)
        if found is None:
            raise BenchError(f"no form on the join page ({page.status_code})")
        guest.csrf = found.group(1)

    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(open_link, guests))

    worker_log = stack.log_dir / "worker.log"
    log_offset = worker_log.stat().st_size
    go = threading.Event()
    start = [0.0]

    def submit(guest: Guest) -> None:
        go.wait()
        try:
            answer = guest.browser.http.post(
                f"/j/{scene.invite_token}",
                data={
                    "csrfmiddlewaretoken": guest.csrf,
                    "display_name": f"Burst Guest {guest.number}",
                },
            )
        except httpx.HTTPError as error:
            guest.error = repr(error)
            return
        finally:
            guest.answered = time.perf_counter()
        guest.status_code = answer.status_code
        if answer.status_code == 302:
            guest.browser.lobby_path = answer.headers["location"]
            guest.public_id = guest.browser.lobby_path.rstrip("/").rsplit("/", 1)[-1]
        else:
            guest.error = f"{answer.status_code}: {answer.text[:200]!r}"

    threads = [threading.Thread(target=submit, args=(g,), daemon=True) for g in guests]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every thread is at the start line
    wall = time.time()
    start[0] = time.perf_counter()
    go.set()
    print(f"  GuestGate: {n} guests submit the join form now", flush=True)
    result = GuestGateBurst(guests=guests, started=start[0])
    requests = JoinRequest.objects.filter(room=room)
    knocks = MembershipEvent.objects.filter(room_id=scene.room_id, membership="knock")

    def since_start(moment: float) -> float:
        return moment - start[0]

    # Until every guest that got a lobby is on the moderator's queue.
    seen: dict[str, float] = {}

    def on_queue() -> bool:
        done = not any(thread.is_alive() for thread in threads)
        if done and "posts" not in seen:
            seen["posts"] = max(g.answered or 0.0 for g in guests)
        expected = sum(g.in_lobby for g in guests)
        counts = status_counts(requests)
        now = time.perf_counter()
        if done and counts.get(Status.WAITING, 0) >= expected:
            seen.setdefault("waiting", now)
        if (
            done
            and "knocks" not in seen
            and knocks.values("user_id").distinct().count() >= expected
        ):
            seen["knocks"] = now
        if done and counts.get(Status.WAITING, 0) + _closed(counts) >= expected:
            seen.setdefault("settled", now)  # some ended elsewhere (failed): lost, reported
        return "knocks" in seen and ("waiting" in seen or "settled" in seen)

    def progress() -> str:
        return counts_text(status_counts(requests))

    completed = _wait(
        on_queue, f"{n} knocks on the queue", phase_timeout(n), POLL_SECONDS, progress
    )
    for thread in threads:
        thread.join(timeout=1)
    if not completed:
        result.incomplete.append("not every guest reached the queue in time")
    answered = [g.answered for g in guests if g.answered is not None]
    if answered:
        result.marks_s["last form POST answered"] = since_start(max(answered))
        result.marks_s["median form POST answered"] = median([since_start(a) for a in answered])
    if "waiting" in seen:
        result.marks_s["all waiting on the queue (DB poll)"] = since_start(seen["waiting"])
    if "knocks" in seen:
        result.marks_s["all knock events recorded (DB poll)"] = since_start(seen["knocks"])
    last_push = knocks.order_by("-received_at").values_list("received_at", flat=True).first()
    if last_push is not None:
        result.marks_s["last knock push recorded (DB)"] = last_push.timestamp() - wall
    result.knock_times_s = _audit_times(room, AuditEntry.Action.KNOCKED, wall)

    # Approve all, as the dashboard's button does, until every request is joined.
    sampled = [g for g in guests if g.in_lobby][:SAMPLED_LOBBIES]
    followers = [
        threading.Thread(target=_follow_lobby, args=(g, result), daemon=True) for g in sampled
    ]
    for follower in followers:
        follower.start()
    time.sleep(0.3)  # their long polls are waiting at the server
    approve_wall = time.time()
    approve_start = time.perf_counter()
    print(f"  GuestGate: approve all ({counts_text(status_counts(requests))})", flush=True)
    outcome = join_requests_approve_all(room, moderator=scene.moderator_id)
    approved = time.perf_counter()
    result.approve_all = f"approved {outcome.approved}, skipped {outcome.skipped}"
    expected_joined = outcome.approved

    def all_joined() -> bool:
        counts = status_counts(requests)
        return counts.get(Status.JOINED, 0) + _closed(counts) >= expected_joined

    completed = _wait(
        all_joined, "every approved guest joined", phase_timeout(n), POLL_SECONDS, progress
    )
    joined_at = time.perf_counter()
    if not completed:
        result.incomplete.append("not every approved guest joined in time")
    for follower in followers:
        follower.join(timeout=30)
    result.marks_s["approve_all returned"] = approved - approve_start
    if completed:
        result.marks_s["all joined (DB poll)"] = joined_at - approve_start
    joins = MembershipEvent.objects.filter(room_id=scene.room_id, membership="join")
    last_join = joins.order_by("-received_at").values_list("received_at", flat=True).first()
    if last_join is not None:
        result.marks_s["last join push recorded (DB)"] = last_join.timestamp() - approve_wall
    result.join_times_s = _audit_times(room, AuditEntry.Action.JOINED, approve_wall)
    approvals = [0.0, *_audit_times(room, AuditEntry.Action.APPROVED, approve_wall)]
    result.approval_gaps_s = [b - a for a, b in itertools.pairwise(approvals)]
    result.lobby_told_s = [t - approve_start for t in result.lobby_told_s]

    # What every guest's lobby says now (one plain status request each).
    def ask(guest: Guest) -> None:
        if not guest.in_lobby:
            return
        try:
            state = guest.browser.status()
            guest.lobby_status = state["status"]
            guest.session = state.get("session")
        except httpx.HTTPError as error:
            guest.lobby_status = f"error {error!r}"

    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(ask, guests))
    for guest in guests:
        guest.browser.close()

    # Each let-in guest joins the call with the lobby's session, as Element Call would.
    senders = [
        CallSender(
            base_url=g.session["homeserverUrl"],
            access_token=g.session["accessToken"],
            room_id=g.session["roomId"],
            user_id=g.session["userId"],
            device_id=g.session["deviceId"],
        )
        for g in guests
        if g.session
    ]
    in_call = CallPresence.objects.filter(
        join_request__room=room, joined_at__isnull=False, left_at__isnull=True
    )
    result.calls = _call_phase(
        "GuestGate",
        senders,
        lambda: in_call.count(),
        "in the call on GuestGate (DB poll)",
        POLL_SECONDS,
    )
    result.statuses = status_counts(requests)
    result.attempts = sum(requests.values_list("attempts", flat=True))
    log = worker_log.read_bytes()[log_offset:]
    result.worker_retries = log.count(b"; retry ")
    result.worker_rate_limited = log.count(b"M_LIMIT_EXCEEDED")
    return result


def _follow_lobby(guest: Guest, result: GuestGateBurst) -> None:
    """A guest's lobby page: long poll until it says joined (or something else final)."""
    try:
        state: dict[str, Any] = guest.browser.status()
        deadline = time.monotonic() + 600
        while state["status"] in JoinRequest.OPEN and time.monotonic() < deadline:
            state = guest.browser.status(since=state["version"])
        if state["status"] == Status.JOINED:
            result.lobby_told_s.append(time.perf_counter())
        else:
            result.lobby_failures.append(f"guest {guest.number}: {state['status']}")
    except (httpx.HTTPError, KeyError) as error:
        result.lobby_failures.append(f"guest {guest.number}: {error!r}")


def status_counts(requests: Any) -> dict[str, int]:
    return {row["status"]: row["n"] for row in requests.values("status").annotate(n=Count("pk"))}


def _closed(counts: dict[str, int]) -> int:
    """Requests that ended other than joined (failed, expired ...): they will not move on."""
    return sum(
        n for status, n in counts.items() if status not in (*JoinRequest.OPEN, Status.JOINED)
    )


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "none"


def _audit_times(room: CallRoom, action: str, wall: float) -> list[float]:
    times: Iterable[datetime] = AuditEntry.objects.filter(room=room, action=action).values_list(
        "at", flat=True
    )
    return sorted(at.timestamp() - wall for at in times)


def _wait(
    done: Callable[[], bool], what: str, timeout: float, every: float, progress: Callable[[], str]
) -> bool:
    """Call ``done`` every ``every`` seconds, printing progress now and then; False if it did
    not happen within ``timeout`` (reported, not raised: the results so far still count)."""
    start = time.perf_counter()
    last_print = start
    while not done():
        now = time.perf_counter()
        if now - start > timeout:
            print(f"  gave up waiting for {what} after {timeout:.0f} s", flush=True)
            return False
        if now - last_print > PROGRESS_SECONDS:
            print(f"    {now - start:5.1f} s: {progress()}", flush=True)
            last_print = now
        time.sleep(every)
    return True


# -- The floor ---------------------------------------------------------------------------------


@dataclass
class BareGuest:
    user_id: str
    client: MatrixClient  # the guest appservice, its own connection pool
    invited: threading.Event = field(default_factory=threading.Event)
    knocked: float | None = None  # perf_counter() when the knock call returned
    joined: float | None = None
    session: Session | None = None
    error: str = ""


@dataclass
class FloorBurst:
    guests: list[BareGuest]
    marks_s: dict[str, float] = field(default_factory=dict)
    knock_times_s: list[float] = field(default_factory=list)
    join_times_s: list[float] = field(default_factory=list)
    invite_calls_s: list[float] = field(default_factory=list)  # each invite, in order sent
    knocks_on_main: int = 0
    joins_on_main: int = 0
    races: int = 0
    calls: CallPhase | None = None
    incomplete: list[str] = field(default_factory=list)


def _floor(
    stack: Stack,
    guest_appservice: MatrixClient,
    bot: MatrixClient,
    n: int,
    invite_threads: int = 1,
) -> FloorBurst:
    scene = measure.set_scene(stack.pair, stack.web_url, guest_appservice, bot, register=False)
    pair = stack.pair
    how = f", invites from {invite_threads} threads" if invite_threads > 1 else ""
    print(f"  floor{how}: room {scene.room_id}; {n} bare guests knock now", flush=True)
    guests = [
        BareGuest(
            user_id=f"@{pair.guest_user_prefix}burst{secrets.token_hex(8)}:{pair.guest.server_name}",
            # No client-side timeout short of the phase's, and no resending: the floor is
            # the bare calls at this concurrency, however long the homeserver takes.
            client=MatrixClient(
                base_url=pair.guest.client_url,
                access_token=pair.guest.as_token,
                sleep=scene.floor_races.sleep,
                timeout=phase_timeout(n),
                retries=0,
            ),
        )
        for _ in range(n)
    ]
    floor_bot = MatrixClient(  # GuestGate's bot, without a short timeout or resending
        base_url=pair.main.client_url,
        access_token=pair.main.as_token,
        timeout=phase_timeout(n),
        retries=0,
    )
    go = threading.Event()
    approve_start = [0.0]
    deadline = [0.0]

    def bare_guest(guest: BareGuest) -> None:
        go.wait()
        as_guest = guest.client.as_user(guest.user_id)
        try:
            localpart = guest.user_id[1:].split(":", 1)[0]
            guest.client.register_appservice_user(localpart)
            as_guest.set_displayname(guest.user_id, "Burst Guest (Guest)")
            guest.session = guest.client.login_appservice_user(
                guest.user_id, device_id="BENCHFLOOR", initial_device_display_name="floor"
            )
            as_guest.knock(scene.room_id, via=scene.via)
            guest.knocked = time.perf_counter()
            if not guest.invited.wait(timeout=2 * phase_timeout(n)):
                return
            measure.floor_join(scene, as_guest, deadline=deadline[0])
            guest.joined = time.perf_counter()
        except MatrixError as error:
            guest.error = repr(error)

    threads = [threading.Thread(target=bare_guest, args=(g,), daemon=True) for g in guests]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start = time.perf_counter()
    go.set()
    result = FloorBurst(guests=guests)
    ours = {g.user_id for g in guests}

    def on_main(membership: str) -> set[str]:
        return {m.user_id for m in floor_bot.members(scene.room_id, membership=membership)} & ours

    def all_knocks() -> bool:
        knocked = [g for g in guests if g.knocked is not None]
        settled = all(g.knocked is not None or g.error for g in guests)
        result.knocks_on_main = len(on_main("knock"))
        return settled and result.knocks_on_main >= len(knocked)

    completed = _wait(
        all_knocks,
        f"{n} knocks on main",
        phase_timeout(n),
        MAIN_POLL_SECONDS,
        lambda: f"{result.knocks_on_main} knocks on main",
    )
    knocks_seen = time.perf_counter()
    if not completed:
        result.incomplete.append("not every knock reached main in time")
    knocked = [g for g in guests if g.knocked is not None]
    if not knocked:
        result.incomplete.append("no knock call succeeded")
        for guest in guests:
            guest.invited.set()
            guest.client.close()
        floor_bot.close()
        return result
    result.marks_s["last knock call returned"] = max(g.knocked or 0.0 for g in knocked) - start
    if completed:
        result.marks_s["all knocks on main"] = knocks_seen - start
    result.knock_times_s = sorted((g.knocked or 0.0) - start for g in knocked)

    # The bot invites one after another, as approve-all does (or from several threads, for
    # reference); each guest joins as soon as its own invite returned.
    approve_start[0] = time.perf_counter()
    deadline[0] = approve_start[0] + phase_timeout(n)

    def invite(guest: BareGuest) -> None:
        sent = time.perf_counter()
        try:
            floor_bot.invite(scene.room_id, guest.user_id, reason="approved")
        except MatrixError as error:
            guest.error = f"invite: {error!r}"
        result.invite_calls_s.append(time.perf_counter() - sent)
        guest.invited.set()

    in_order = sorted(knocked, key=lambda g: g.knocked or 0.0)
    with ThreadPoolExecutor(invite_threads) as pool:
        list(pool.map(invite, in_order))
    invited = time.perf_counter()
    for guest in guests:
        guest.invited.set()  # the ones that never knocked stop waiting

    def all_joins() -> bool:
        waiting = any(t.is_alive() for t in threads)
        result.joins_on_main = len(on_main("join"))
        return not waiting and result.joins_on_main >= sum(g.joined is not None for g in guests)

    completed = _wait(
        all_joins,
        f"{n} joins on main",
        phase_timeout(n),
        MAIN_POLL_SECONDS,
        lambda: f"{result.joins_on_main} joins on main",
    )
    joins_seen = time.perf_counter()
    if not completed:
        result.incomplete.append("not every join reached main in time")
    result.marks_s["invites returned (bot invited all)"] = invited - approve_start[0]
    if completed:
        result.marks_s["all joins on main"] = joins_seen - approve_start[0]
    result.join_times_s = sorted(
        (g.joined or 0.0) - approve_start[0] for g in guests if g.joined is not None
    )
    result.races = scene.floor_races.count

    # Each joined guest joins the call with its own session, until main has every one.
    senders = [
        CallSender(
            base_url=pair.guest.client_url,
            access_token=g.session.access_token,
            room_id=scene.room_id,
            user_id=g.user_id,
            device_id=g.session.device_id,
        )
        for g in guests
        if g.joined is not None and g.session is not None
    ]

    def in_call_on_main() -> int:
        events = floor_bot.state_events(scene.room_id, CALL_MEMBER_EVENT)
        return sum(e.sender in ours and e.content.get("application") == "m.call" for e in events)

    result.calls = _call_phase(
        "floor", senders, in_call_on_main, "in the call on main", MAIN_POLL_SECONDS
    )
    for guest in guests:
        guest.client.close()
    floor_bot.close()
    return result


# -- Call membership (both sides) -------------------------------------------------------------


@dataclass
class CallSender:
    """A let-in guest about to join the call with its own session, as Element Call does."""

    base_url: str
    access_token: str
    room_id: str
    user_id: str
    device_id: str
    sent: float | None = None  # perf_counter() when the state event call returned
    error: str = ""


@dataclass
class CallPhase:
    sent: int = 0
    marks_s: dict[str, float] = field(default_factory=dict)
    send_times_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


#: A guest's own server may still be finishing its join (the lobby says joined from main's
#: push): "not in room" is tried again after a moment, as Element Call would on its next try.
NOT_JOINED_YET_TRIES = 50


def _call_phase(
    side: str,
    senders: list[CallSender],
    counted: Callable[[], int],
    where: str,
    every: float,
) -> CallPhase:
    """All ``senders`` send their call member event at the same moment; until ``counted``
    (devices in the call where ``where`` says) reaches the number of events sent."""
    phase = CallPhase()
    go = threading.Event()
    clients = [
        MatrixClient(
            base_url=c.base_url, access_token=c.access_token, timeout=phase_timeout(len(senders))
        )
        for c in senders
    ]

    def send(sender: CallSender, client: MatrixClient) -> None:
        go.wait()
        content = call_member_content(sender.device_id)
        state_key = f"_{sender.user_id}_{sender.device_id}_m.call"
        for attempt in range(NOT_JOINED_YET_TRIES):
            try:
                client.set_state(sender.room_id, CALL_MEMBER_EVENT, content, state_key=state_key)
                sender.sent = time.perf_counter()
                return
            except Forbidden as error:
                if attempt == NOT_JOINED_YET_TRIES - 1:
                    sender.error = repr(error)
                time.sleep(0.1)
            except MatrixError as error:
                sender.error = repr(error)
                return

    threads = [
        threading.Thread(target=send, args=pair, daemon=True)
        for pair in zip(senders, clients, strict=True)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    print(f"  {side}: {len(senders)} guests join the call now", flush=True)
    start = time.perf_counter()
    go.set()
    seen = [0]

    def all_in_call() -> bool:
        sending = any(thread.is_alive() for thread in threads)
        phase.sent = sum(c.sent is not None for c in senders)
        seen[0] = counted()
        return not sending and seen[0] >= phase.sent

    completed = _wait(
        all_in_call,
        f"{len(senders)} call memberships {where}",
        phase_timeout(len(senders)),
        every,
        lambda: f"{phase.sent} sent, {seen[0]} {where}",
    )
    done = time.perf_counter()
    for client in clients:
        client.close()
    phase.send_times_s = sorted(c.sent - start for c in senders if c.sent is not None)
    phase.errors = [f"{c.user_id}: {c.error}" for c in senders if c.error]
    if phase.send_times_s:
        phase.marks_s["last call member event sent"] = phase.send_times_s[-1]
    if completed:
        phase.marks_s[f"all {where}"] = done - start
    else:
        phase.incomplete.append(f"not every call membership {where} in time")
    return phase


def call_member_content(device_id: str) -> dict[str, Any]:
    """What Element Call 0.26 sends when a device joins (CALL-LAB §4)."""
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": secrets.token_hex(16),
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
        "foci_preferred": [],
    }


# -- Report ------------------------------------------------------------------------------------


def run(
    stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, args: argparse.Namespace
) -> Outcome:
    n: int = args.burst_guests
    print(f"Burst: {n} guests at once, GuestGate then the floor, each in a fresh room")
    gg = _guestgate(stack, guest_appservice, bot, n)
    time.sleep(2)  # the worker's and main's last pushes settle
    floor = _floor(stack, guest_appservice, bot, n)
    parallel: FloorBurst | None = None
    if args.burst_parallel_invites > 1:
        time.sleep(2)
        parallel = _floor(stack, guest_appservice, bot, n, args.burst_parallel_invites)

    outcome = Outcome(f"burst {n}")
    knock_gg = gg.marks_s.get("all waiting on the queue (DB poll)")
    knock_floor = floor.marks_s.get("all knocks on main")
    join_gg = gg.marks_s.get("all joined (DB poll)")
    join_floor = floor.marks_s.get("all joins on main")
    rows = [
        _ratio_row(f"knocks: all {n} submitted -> on the queue / on main", knock_gg, knock_floor),
        _ratio_row(f"approve all {n} -> all joined (DB) / joins on main", join_gg, join_floor),
        _ratio_row(
            "call members: all sent -> in the call (DB) / on main",
            _mark(gg.calls, "all in the call on GuestGate (DB poll)"),
            _mark(floor.calls, "all in the call on main"),
        ),
        _ratio_row(
            "(ref) last form POST answered / last knock call returned",
            gg.marks_s.get("last form POST answered"),
            floor.marks_s.get("last knock call returned"),
        ),
        _ratio_row(
            "(ref) approve_all returned / bot's invites returned",
            gg.marks_s.get("approve_all returned"),
            floor.marks_s.get("invites returned (bot invited all)"),
        ),
    ]
    if parallel is not None:
        rows.append(
            _ratio_row(
                f"(ref) approve all -> joins on main, floor with invites from "
                f"{args.burst_parallel_invites} threads",
                join_gg,
                parallel.marks_s.get("all joins on main"),
            )
        )
    if None not in (knock_gg, knock_floor, join_gg, join_floor):
        rows.append(
            _ratio_row(
                "both phases",
                (knock_gg or 0) + (join_gg or 0),
                (knock_floor or 0) + (join_floor or 0),
            )
        )
    outcome.tables.append(table(("step (seconds)", "GuestGate", "floor", "ratio"), rows))

    outcome.tables.append(
        table(
            ("GuestGate: s since the phase started", "value"),
            [(name, f"{value:.2f}") for name, value in gg.marks_s.items()]
            + _spread("per guest: knocked (audit, DB)", gg.knock_times_s)
            + _spread("per guest: joined after approve-all began (audit, DB)", gg.join_times_s)
            + _spread(f"{len(gg.lobby_told_s)} sampled lobbies told joined", gg.lobby_told_s)
            + _tenths("approvals: s between two (audit)", gg.approval_gaps_s)
            + _call_rows(gg.calls),
        )
    )
    outcome.tables.append(
        table(
            ("floor: s since the phase started", "value"),
            [(name, f"{value:.2f}") for name, value in floor.marks_s.items()]
            + _spread("per guest: knock call returned", floor.knock_times_s)
            + _spread("per guest: join call returned after invites began", floor.join_times_s)
            + _tenths("bot: s per invite call", floor.invite_calls_s)
            + _call_rows(floor.calls),
        )
    )
    if parallel is not None:
        outcome.tables.append(
            table(
                (
                    f"floor, invites from {args.burst_parallel_invites} threads: s since start",
                    "value",
                ),
                [(name, f"{value:.2f}") for name, value in parallel.marks_s.items()]
                + _spread(
                    "per guest: join call returned after invites began", parallel.join_times_s
                )
                + [
                    (
                        "errors / lost",
                        f"{sum(bool(g.error) for g in parallel.guests)} / "
                        f"{n - sum(g.joined is not None for g in parallel.guests)}",
                    )
                ],
            )
        )

    post_codes = Counter(g.status_code for g in gg.guests if g.status_code is not None)
    transport_errors = [g for g in gg.guests if g.status_code is None]
    not_302 = [g for g in gg.guests if g.status_code not in (None, 302)]
    rate_limited = post_codes.get(429, 0)
    lobby_joined = sum(g.lobby_status == Status.JOINED for g in gg.guests)
    lobby_other = Counter(g.lobby_status for g in gg.guests if g.lobby_status != Status.JOINED)
    floor_errors = [g for g in floor.guests if g.error]
    floor_joined = sum(g.joined is not None for g in floor.guests)
    saw_failure = len(transport_errors) + len(not_302) + len(gg.lobby_failures)
    saw_failure += sum(n for status, n in lobby_other.items() if status)
    lost = n - lobby_joined
    counts = [
        ("guests", str(n), str(n)),
        ("join form answered 302 (to the lobby)", str(post_codes.get(302, 0)), "-"),
        ("join form answered otherwise", _codes(not_302), "-"),
        ("  of which 429", str(rate_limited), "-"),
        ("transport errors (timeout, refused)", str(len(transport_errors)), "-"),
        ("homeserver errors reaching the guest / floor", "-", str(len(floor_errors))),
        ("request statuses at the end", counts_text(gg.statuses), "-"),
        (
            "lobbies saying joined at the end / joins on main",
            str(lobby_joined),
            str(floor.joins_on_main),
        ),
        (
            "lobbies saying anything else",
            counts_text(dict(lobby_other)) if lobby_other else "0",
            "-",
        ),
        ("sampled lobbies that failed", str(len(gg.lobby_failures)), "-"),
        ("approve_all", gg.approve_all, "-"),
        ("homeserver retries (attempts on requests)", str(gg.attempts), "-"),
        (
            "worker: task retries / M_LIMIT_EXCEEDED in log",
            f"{gg.worker_retries} / {gg.worker_rate_limited}",
            "-",
        ),
        ("joins that lost the invite race (retried)", "-", str(floor.races)),
        ("guests that saw a failure or 429", str(saw_failure), str(len(floor_errors))),
        (
            "call member events sent / errors",
            _call_counts(gg.calls),
            _call_counts(floor.calls),
        ),
        ("lost (did not end joined)", str(lost), str(n - floor_joined)),
    ]
    outcome.tables.append(table(("outcome", "GuestGate", "floor"), counts))
    problems = [*gg.incomplete, *(f"floor: {p}" for p in floor.incomplete)]
    problems += [
        *(gg.calls.incomplete if gg.calls else []),
        *(gg.calls.errors[:3] if gg.calls else []),
    ]
    problems += [f"floor: {p}" for p in (floor.calls.incomplete if floor.calls else [])]
    examples = [f"guest {g.number}: {g.error}" for g in [*not_302, *transport_errors][:3]]
    examples += gg.lobby_failures[:3] + [f"floor {g.user_id}: {g.error}" for g in floor_errors[:3]]
    if problems or examples:
        outcome.tables.append("\n".join(["problems:", *problems, *examples]))

    outcome.verdict(f"all {n} knocked and let in, none lost", lost == 0)
    outcome.verdict(f"no failure or 429 reaching any of {n} guests", saw_failure == 0)
    calls_followed = (
        gg.calls is not None
        and not gg.calls.incomplete
        and not gg.calls.errors
        and gg.calls.sent == lobby_joined
    )
    outcome.verdict("every let-in guest's call membership followed", calls_followed)

    report = {
        "benchmark": "burst",
        "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": {**environment_now(), "load average at the end": load_average()},
        "parameters": {"guests": n, "poll_ms": POLL_SECONDS * 1000},
        "guestgate": {
            "marks_s": gg.marks_s,
            "knock_times_s": gg.knock_times_s,
            "join_times_s": gg.join_times_s,
            "approval_gaps_s": gg.approval_gaps_s,
            "lobby_told_s": gg.lobby_told_s,
            "post_codes": {str(code): count for code, count in post_codes.items()},
            "transport_errors": len(transport_errors),
            "statuses": gg.statuses,
            "lobbies_joined": lobby_joined,
            "attempts": gg.attempts,
            "worker_retries": gg.worker_retries,
            "worker_rate_limited": gg.worker_rate_limited,
            "approve_all": gg.approve_all,
            "calls": _call_json(gg.calls),
            "incomplete": gg.incomplete,
        },
        "floor": {
            "marks_s": floor.marks_s,
            "knock_times_s": floor.knock_times_s,
            "join_times_s": floor.join_times_s,
            "invite_calls_s": floor.invite_calls_s,
            "errors": [g.error for g in floor_errors],
            "joined": floor_joined,
            "races": floor.races,
            "calls": _call_json(floor.calls),
            "incomplete": floor.incomplete,
        },
        "floor_parallel_invites": None
        if parallel is None
        else {
            "threads": args.burst_parallel_invites,
            "marks_s": parallel.marks_s,
            "join_times_s": parallel.join_times_s,
            "errors": [g.error for g in parallel.guests if g.error],
        },
        "verdicts": dict(outcome.verdicts),
    }
    write_json(args.json_dir / f"burst-{n}.json", report)
    return outcome


def _ratio_row(step: str, guestgate: float | None, floor: float | None) -> tuple[str, ...]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    ratio = "-" if guestgate is None or not floor else f"{guestgate / floor:.2f}x"
    return (step, seconds(guestgate), seconds(floor), ratio)


def _spread(name: str, values: Sequence[float]) -> list[tuple[str, str]]:
    if not values:
        return []
    return [
        (
            f"{name}: median / p95 / max",
            f"{median(values):.2f} / {p95(values):.2f} / {max(values):.2f}",
        )
    ]


def _tenths(name: str, values: Sequence[float]) -> list[tuple[str, str]]:
    """Median of the first and of the last tenth: does each step get slower as N grows?"""
    if len(values) < 10:
        return []
    tenth = len(values) // 10
    first, last = median(values[:tenth]), median(values[-tenth:])
    return [(f"{name}: median of first / last tenth", f"{first:.3f} / {last:.3f}")]


def _codes(guests: Sequence[Guest]) -> str:
    codes = Counter(g.status_code for g in guests)
    return ", ".join(f"{code}: {count}" for code, count in sorted(codes.items())) or "0"


def _mark(phase: CallPhase | None, name: str) -> float | None:
    return None if phase is None else phase.marks_s.get(name)


def _call_rows(phase: CallPhase | None) -> list[tuple[str, str]]:
    if phase is None:
        return []
    rows = [(f"call: {name}", f"{value:.2f}") for name, value in phase.marks_s.items()]
    return rows + _spread("call: per guest, call member event sent", phase.send_times_s)


def _call_counts(phase: CallPhase | None) -> str:
    return "-" if phase is None else f"{phase.sent} / {len(phase.errors)}"


def _call_json(phase: CallPhase | None) -> dict[str, Any] | None:
    if phase is None:
        return None
    return {
        "sent": phase.sent,
        "marks_s": phase.marks_s,
        "send_times_s": phase.send_times_s,
        "errors": phase.errors,
        "incomplete": phase.incomplete,
    }
