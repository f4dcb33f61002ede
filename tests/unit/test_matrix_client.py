"""MatrixClient against a scripted homeserver: what it sends, and what it makes of the answers.

The answers are real-shaped Synapse bodies from tests/unit/fixtures/matrix/. The flows
themselves are tested against the real homeserver pair in tests/integration/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from matrix import (
    BadRequest,
    ExclusiveNamespace,
    Forbidden,
    HomeserverUnavailable,
    InvalidUsername,
    MatrixClient,
    Member,
    NotFound,
    PowerLevels,
    Profile,
    RateLimited,
    Versions,
    ids,
    register_with_shared_secret,
)
from matrix.admin import reset_federation_connection
from matrix.client import JOIN_RACE_DELAYS
from matrix.types import CREATOR_POWER_LEVEL

FIXTURES = Path(__file__).parent / "fixtures" / "matrix"

BASE_URL = "http://hs.test"
AS_TOKEN = "as_token_do_not_leak"
GUEST = "@guest_x:localhost:28481"
GUEST_ESCAPED = "%40guest_x%3Alocalhost%3A28481"
BOT = "@guest-desk:localhost:28482"
MODERATOR = "@mod:localhost:28482"
ROOM = "!AbCd1234"  # room version 12: no server part
MAIN = "localhost:28482"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json={} if body is None else body)


def refused(status: int, name: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, json=fixture(name), **kwargs)


def fail_with(exc_type: type[httpx.TransportError]) -> Reply:
    def raise_it(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return raise_it


class FakeHomeserver:
    """Answers with the scripted replies in order, and records every request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else reply

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def path_of(request: httpx.Request) -> str:
    """The path exactly as sent on the wire (still percent-encoded)."""
    return request.url.raw_path.decode().split("?", 1)[0]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(sleeps: list[float]) -> Callable[..., MatrixClient]:
    """A client of the fake homeserver, with the appservice token, recording its sleeps."""

    def connect(
        homeserver: FakeHomeserver, *, access_token: str | None = AS_TOKEN, retries: int = 2
    ) -> MatrixClient:
        return MatrixClient(
            base_url=BASE_URL,
            access_token=access_token,
            retries=retries,
            transport=httpx.MockTransport(homeserver),
            sleep=sleeps.append,
        )

    return connect


# -- How requests are built ------------------------------------------------------------------


def test_the_token_goes_in_the_authorization_header_and_never_in_the_url(connect):
    homeserver = FakeHomeserver(ok(fixture("whoami_appservice_user")))

    connect(homeserver).as_user(GUEST).whoami()

    request = homeserver.last
    assert request.headers["Authorization"] == f"Bearer {AS_TOKEN}"
    assert AS_TOKEN not in str(request.url)
    assert "access_token" not in str(request.url)
    assert request.headers["User-Agent"] == "GuestGate"


def test_a_client_without_token_sends_no_authorization_header(connect):
    homeserver = FakeHomeserver(ok(fixture("login_appservice")))

    connect(homeserver, access_token=None).password_login(MODERATOR, "hunter2")

    assert "Authorization" not in homeserver.last.headers


def test_as_user_masquerades_on_every_request_and_leaves_the_parent_alone(connect):
    homeserver = FakeHomeserver(ok(fixture("whoami_appservice_user")), ok({"user_id": BOT}))
    client = connect(homeserver)

    assert client.as_user(GUEST).whoami().user_id == GUEST
    client.whoami()

    assert homeserver.requests[0].url.params.get_list("user_id") == [GUEST]
    assert "user_id" not in homeserver.requests[1].url.params


def test_knock_passes_server_name_and_via_for_v12_room_ids(connect):
    homeserver = FakeHomeserver(ok(fixture("knock")))

    room_id = (
        connect(homeserver)
        .as_user(GUEST)
        .knock(ROOM, via=[MAIN, "localhost:28483"], reason="Alice from accounting")
    )

    request = homeserver.last
    assert room_id == ROOM
    assert request.method == "POST"
    assert path_of(request) == "/_matrix/client/v3/knock/%21AbCd1234"
    assert request.url.params.get_list("server_name") == [MAIN, "localhost:28483"]
    assert request.url.params.get_list("via") == [MAIN, "localhost:28483"]
    assert request.url.params["user_id"] == GUEST
    assert body_of(request) == {"reason": "Alice from accounting"}


def test_a_single_via_string_is_not_split_into_characters(connect):
    homeserver = FakeHomeserver(ok(fixture("knock")))

    connect(homeserver).knock(ROOM, via=MAIN)

    assert homeserver.last.url.params.get_list("via") == [MAIN]
    assert body_of(homeserver.last) == {}


def test_join_passes_server_name_and_via(connect):
    homeserver = FakeHomeserver(ok({"room_id": ROOM}))

    connect(homeserver).as_user(GUEST).join(ROOM, via=[MAIN])

    request = homeserver.last
    assert path_of(request) == "/_matrix/client/v3/join/%21AbCd1234"
    assert request.url.params.get_list("server_name") == [MAIN]
    assert request.url.params.get_list("via") == [MAIN]


def test_user_ids_with_a_port_are_escaped_as_one_path_segment(connect):
    homeserver = FakeHomeserver(ok())

    connect(homeserver).as_user(GUEST).set_displayname(GUEST, "Alice (Guest)")

    assert path_of(homeserver.last) == f"/_matrix/client/v3/profile/{GUEST_ESCAPED}/displayname"
    assert homeserver.last.method == "PUT"
    assert body_of(homeserver.last) == {"displayname": "Alice (Guest)"}


def test_aliases_and_room_ids_with_a_server_part_are_escaped(connect):
    homeserver = FakeHomeserver(ok(fixture("directory_room")), ok(fixture("member_join_content")))
    client = connect(homeserver)

    assert client.resolve_alias("#call:localhost:28482") == (ROOM, [MAIN, "localhost:28481"])
    client.member("!old:localhost:28482", GUEST)

    assert path_of(homeserver.requests[0]) == (
        "/_matrix/client/v3/directory/room/%23call%3Alocalhost%3A28482"
    )
    assert path_of(homeserver.requests[1]) == (
        f"/_matrix/client/v3/rooms/%21old%3Alocalhost%3A28482/state/m.room.member/{GUEST_ESCAPED}"
    )


def test_register_appservice_user_asks_for_no_login(connect):
    homeserver = FakeHomeserver(ok(fixture("register_inhibit_login")))

    user_id = connect(homeserver).register_appservice_user("guest_x")

    assert user_id == GUEST
    assert path_of(homeserver.last) == "/_matrix/client/v3/register"
    assert body_of(homeserver.last) == {
        "type": "m.login.application_service",
        "username": "guest_x",
        "inhibit_login": True,
    }


def test_login_appservice_user_returns_a_session_with_a_device(connect):
    homeserver = FakeHomeserver(ok(fixture("login_appservice")))

    session = connect(homeserver).login_appservice_user(
        GUEST, device_id="GUESTGATEX", initial_device_display_name="GuestGate"
    )

    assert body_of(homeserver.last) == {
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": GUEST},
        "device_id": "GUESTGATEX",
        "initial_device_display_name": "GuestGate",
    }
    assert session.homeserver_url == BASE_URL
    assert session.user_id == GUEST
    assert session.device_id == "GUESTGATEX"
    assert session.access_token == fixture("login_appservice")["access_token"]
    assert session.access_token not in repr(session)


def test_password_login_sends_a_user_identifier_and_the_password(connect):
    homeserver = FakeHomeserver(ok(fixture("login_appservice")))

    connect(homeserver, access_token=None).password_login("mod", "hunter2")

    assert body_of(homeserver.last) == {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "mod"},
        "password": "hunter2",
    }


@pytest.mark.parametrize("action", ["invite", "kick", "ban", "unban"])
def test_membership_actions_post_the_target_and_the_reason(connect, action):
    homeserver = FakeHomeserver(ok())

    getattr(connect(homeserver), action)(ROOM, GUEST, "approved by Mod")

    assert path_of(homeserver.last) == f"/_matrix/client/v3/rooms/%21AbCd1234/{action}"
    assert body_of(homeserver.last) == {"user_id": GUEST, "reason": "approved by Mod"}


def test_leave_without_a_reason_sends_an_empty_object(connect):
    homeserver = FakeHomeserver(ok())

    connect(homeserver).as_user(GUEST).leave(ROOM)

    assert path_of(homeserver.last) == "/_matrix/client/v3/rooms/%21AbCd1234/leave"
    assert body_of(homeserver.last) == {}


def test_deactivate_sends_erase_as_the_masqueraded_user(connect):
    homeserver = FakeHomeserver(ok({"id_server_unbind_result": "success"}))

    connect(homeserver).as_user(GUEST).deactivate(erase=True)

    assert path_of(homeserver.last) == "/_matrix/client/v3/account/deactivate"
    assert homeserver.last.url.params["user_id"] == GUEST
    assert body_of(homeserver.last) == {"erase": True}


def test_logout_posts_with_the_clients_own_token(connect):
    homeserver = FakeHomeserver(ok())

    connect(homeserver, access_token="syt_guest_token").logout()

    assert path_of(homeserver.last) == "/_matrix/client/v3/logout"
    assert homeserver.last.headers["Authorization"] == "Bearer syt_guest_token"


def test_with_token_uses_the_other_token_without_masquerading(connect):
    homeserver = FakeHomeserver(ok())

    connect(homeserver).as_user(GUEST).with_token("syt_guest_token").logout()

    assert homeserver.last.headers["Authorization"] == "Bearer syt_guest_token"
    assert "user_id" not in homeserver.last.url.params


def test_set_state_puts_the_content_and_returns_the_event_id(connect):
    homeserver = FakeHomeserver(ok({"event_id": "$PowerLevels"}))

    event_id = connect(homeserver).set_state(ROOM, "m.room.power_levels", {"invite": 50})

    assert event_id == "$PowerLevels"
    assert homeserver.last.method == "PUT"
    assert path_of(homeserver.last) == (
        "/_matrix/client/v3/rooms/%21AbCd1234/state/m.room.power_levels/"
    )
    assert body_of(homeserver.last) == {"invite": 50}


def test_create_room_makes_a_knock_room_and_merges_power_levels(connect):
    homeserver = FakeHomeserver(
        ok({"room_id": ROOM}),
        ok(fixture("power_levels_v12")),
        ok({"event_id": "$PowerLevels"}),
    )

    room_id = connect(homeserver).create_room(
        name="Weekly all-hands", invite=[BOT], power_level_users={MODERATOR: 100}
    )

    created, _, updated = homeserver.requests
    assert room_id == ROOM
    assert body_of(created) == {
        "preset": "private_chat",
        "name": "Weekly all-hands",
        "invite": [BOT],
        "initial_state": [
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
        ],
    }
    assert body_of(updated)["users"] == {BOT: 50, MODERATOR: 100}
    assert body_of(updated)["events"] == fixture("power_levels_v12")["events"]


# -- Reading what the homeserver answers -------------------------------------------------------


def test_members_asks_for_one_membership_and_reads_the_events(connect):
    homeserver = FakeHomeserver(ok(fixture("members_knock")))

    members = connect(homeserver).members(ROOM, membership="knock")

    assert homeserver.last.url.params["membership"] == "knock"
    assert members == [
        Member(GUEST, "knock", "Alice (Guest)", "Alice from accounting", GUEST),
        Member(
            "@guest_y:localhost:28481", "knock", "Bob (Guest)", None, "@guest_y:localhost:28481"
        ),
    ]


def test_members_skips_malformed_entries(connect):
    chunk = [*fixture("members_knock")["chunk"], {"state_key": GUEST}, "junk"]
    homeserver = FakeHomeserver(ok({"chunk": chunk}))

    assert len(connect(homeserver).members(ROOM)) == 2


def test_member_reads_the_sender_when_the_homeserver_gives_the_whole_event(connect):
    homeserver = FakeHomeserver(ok(fixture("member_knock_event")))

    member = connect(homeserver).member(ROOM, GUEST)

    assert homeserver.last.url.params["format"] == "event"
    assert member == Member(GUEST, "knock", "Alice (Guest)", "Alice from accounting", GUEST)


def test_member_accepts_an_answer_with_the_content_only(connect):
    homeserver = FakeHomeserver(ok(fixture("member_join_content")))

    assert connect(homeserver).member(ROOM, GUEST) == Member(
        GUEST, "join", "Alice (Guest)", None, None
    )


def test_member_is_none_when_the_room_has_no_membership_for_the_user(connect):
    homeserver = FakeHomeserver(refused(404, "not_found_event"))

    assert connect(homeserver).member(ROOM, GUEST) is None


def test_state_event_is_none_when_the_room_has_no_such_state(connect):
    homeserver = FakeHomeserver(refused(404, "not_found_event"))

    assert connect(homeserver).state_event(ROOM, "m.room.name") is None


def test_get_displayname_is_none_for_an_unknown_profile(connect):
    homeserver = FakeHomeserver(refused(404, "not_found_profile"), ok({"displayname": "Alice"}))
    client = connect(homeserver)

    assert client.get_displayname(GUEST) is None
    assert client.get_displayname(GUEST) == "Alice"


def test_room_info_reads_name_join_rule_and_the_create_event(connect):
    homeserver = FakeHomeserver(
        ok(fixture("room_name")), ok(fixture("join_rules_knock")), ok(fixture("create_event_v12"))
    )

    info = connect(homeserver).room_info(ROOM)

    assert (info.room_id, info.name, info.join_rule) == (ROOM, "Weekly all-hands", "knock")
    assert (info.room_version, info.creator) == ("12", MODERATOR)


def test_room_info_of_an_unnamed_old_room_takes_the_creator_from_the_content(connect):
    homeserver = FakeHomeserver(
        refused(404, "not_found_event"),
        ok(fixture("join_rules_knock")),
        ok(fixture("create_content_v10")),
    )

    info = connect(homeserver).room_info("!old:localhost:28482")

    assert info.name is None
    assert (info.room_version, info.creator) == ("10", MODERATOR)


def test_power_levels_of_a_v12_room_give_the_creator_unlimited_power(connect):
    homeserver = FakeHomeserver(ok(fixture("power_levels_v12")), ok(fixture("create_event_v12")))

    levels = connect(homeserver).power_levels(ROOM)

    assert levels.level_of(MODERATOR) == CREATOR_POWER_LEVEL
    assert levels.level_of(BOT) == 50
    assert levels.may_kick(BOT, GUEST)
    assert not levels.may_kick(BOT, MODERATOR)


def test_power_levels_of_an_old_room_without_the_event_give_the_creator_100(connect):
    homeserver = FakeHomeserver(refused(404, "not_found_event"), ok(fixture("create_content_v10")))

    levels = connect(homeserver).power_levels("!old:localhost:28482")

    assert levels.level_of(MODERATOR) == 100
    assert levels.level_of(BOT) == 0


def test_an_answer_without_a_required_key_is_a_broken_homeserver(connect):
    login = fixture("login_appservice")
    del login["access_token"]
    homeserver = FakeHomeserver(ok(login))

    with pytest.raises(HomeserverUnavailable, match="access_token"):
        connect(homeserver).login_appservice_user(GUEST)
    assert len(homeserver.requests) == 1


@pytest.mark.parametrize("content", [b"<html>oops</html>", b"[1, 2]"])
def test_a_success_whose_body_is_not_a_json_object_is_a_broken_homeserver(connect, content):
    homeserver = FakeHomeserver(httpx.Response(200, content=content))

    with pytest.raises(HomeserverUnavailable) as raised:
        connect(homeserver).register_appservice_user("guest_x")

    assert raised.value.retryable
    assert len(homeserver.requests) == 1  # it did register: sending it again is for the caller


# -- Retries ---------------------------------------------------------------------------------


def test_a_rate_limited_request_waits_retry_after_ms_then_succeeds(connect, sleeps):
    homeserver = FakeHomeserver(
        refused(429, "limit_exceeded", headers={"Retry-After": "4"}), ok({"room_id": ROOM})
    )

    connect(homeserver).invite(ROOM, GUEST)

    assert sleeps == [3.3]
    assert len(homeserver.requests) == 2


def test_a_rate_limit_longer_than_the_cap_is_raised_at_once(connect, sleeps):
    homeserver = FakeHomeserver(refused(429, "limit_exceeded_long"))

    with pytest.raises(RateLimited) as raised:
        connect(homeserver).invite(ROOM, GUEST)

    assert raised.value.retry_after_ms == 42000
    assert sleeps == []
    assert len(homeserver.requests) == 1


def test_503_twice_then_200_succeeds_after_two_growing_backoffs(connect, sleeps):
    homeserver = FakeHomeserver(
        httpx.Response(503), httpx.Response(503), ok(fixture("whoami_device"))
    )

    whoami = connect(homeserver).whoami()

    assert whoami.device_id == "QWERTYUIOP"
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_503_forever_raises_homeserver_unavailable_after_retries_plus_one_attempts(connect, sleeps):
    homeserver = FakeHomeserver(*[httpx.Response(503)] * 4)

    with pytest.raises(HomeserverUnavailable) as raised:
        connect(homeserver, retries=2).whoami()

    assert raised.value.status == 503
    assert len(homeserver.requests) == 3
    assert len(sleeps) == 2


def test_zero_retries_means_one_attempt(connect, sleeps):
    homeserver = FakeHomeserver(httpx.Response(502))

    with pytest.raises(HomeserverUnavailable):
        connect(homeserver, retries=0).whoami()

    assert len(homeserver.requests) == 1
    assert sleeps == []


def test_a_forbidden_answer_is_not_retried(connect, sleeps):
    homeserver = FakeHomeserver(refused(403, "forbidden_banned"))

    with pytest.raises(Forbidden, match="banned"):
        connect(homeserver).as_user(GUEST).knock(ROOM, via=[MAIN])

    assert len(homeserver.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout, httpx.ConnectError, httpx.ReadTimeout, httpx.ReadError]
)
def test_transport_failures_become_homeserver_unavailable(connect, failure):
    homeserver = FakeHomeserver(fail_with(failure))

    with pytest.raises(HomeserverUnavailable) as raised:
        connect(homeserver, retries=0).whoami()

    assert raised.value.status is None
    assert raised.value.retryable


def test_a_connect_timeout_is_retried_then_succeeds(connect, sleeps):
    homeserver = FakeHomeserver(fail_with(httpx.ConnectTimeout), ok(fixture("whoami_device")))

    assert connect(homeserver).whoami().user_id == GUEST
    assert len(sleeps) == 1


def test_an_error_never_shows_the_token_even_if_the_homeserver_echoes_it(connect):
    homeserver = FakeHomeserver(
        httpx.Response(400, json={"errcode": "M_UNKNOWN", "error": f"bad request from {AS_TOKEN}"})
    )

    with pytest.raises(BadRequest) as raised:
        connect(homeserver).whoami()

    assert AS_TOKEN not in str(raised.value)
    assert AS_TOKEN not in repr(raised.value)


# -- The invite/join race (MATRIX-LAB P8) ------------------------------------------------------


def test_join_retries_a_duplicate_auth_events_refusal_then_succeeds(connect, sleeps):
    homeserver = FakeHomeserver(
        refused(403, "forbidden_duplicate_auth_events"), ok({"room_id": ROOM})
    )

    assert connect(homeserver).as_user(GUEST).join(ROOM, via=[MAIN]) == ROOM
    assert sleeps == list(JOIN_RACE_DELAYS[:1])


def test_join_retries_not_invited_while_the_invite_is_in_flight(connect, sleeps):
    homeserver = FakeHomeserver(
        refused(403, "forbidden_not_invited"),
        refused(403, "forbidden_not_invited"),
        ok({"room_id": ROOM}),
    )

    connect(homeserver).as_user(GUEST).join(ROOM, via=[MAIN])

    assert sleeps == list(JOIN_RACE_DELAYS[:2])


def test_join_gives_up_after_the_race_delays(connect, sleeps):
    homeserver = FakeHomeserver(
        *[refused(403, "forbidden_not_invited")] * (len(JOIN_RACE_DELAYS) + 1)
    )

    with pytest.raises(Forbidden, match="not invited"):
        connect(homeserver).as_user(GUEST).join(ROOM, via=[MAIN])

    assert sleeps == list(JOIN_RACE_DELAYS)
    assert len(homeserver.requests) == len(JOIN_RACE_DELAYS) + 1


def test_join_does_not_retry_a_ban(connect, sleeps):
    homeserver = FakeHomeserver(refused(403, "forbidden_banned"))

    with pytest.raises(Forbidden):
        connect(homeserver).as_user(GUEST).join(ROOM, via=[MAIN])

    assert sleeps == []


# -- The server and the checks of operations ------------------------------------------------


def test_versions_needs_no_token_and_reads_the_versions_synapse_lists(connect):
    homeserver = FakeHomeserver(ok(fixture("versions")))

    versions = connect(homeserver, access_token=None).versions()

    assert path_of(homeserver.last) == "/_matrix/client/versions"
    assert "Authorization" not in homeserver.last.headers
    assert versions.versions[0] == "r0.0.1"
    assert versions.newest == "v1.15"
    assert versions.unstable_features["org.matrix.msc3827.stable"] is True


@pytest.mark.parametrize(
    ("listed", "newest"),
    [(["v1.9", "v1.10", "v1.2"], "v1.10"), (["r0.6.1"], "r0.6.1"), ([], None)],
)
def test_the_newest_version_is_compared_by_number_not_by_position(listed, newest):
    assert Versions(tuple(listed)).newest == newest


def test_versions_of_a_homeserver_that_lists_none_is_empty(connect):
    homeserver = FakeHomeserver(ok({"versions": "v1.12"}))

    assert connect(homeserver).versions().versions == ()


def test_a_free_username_is_available(connect):
    homeserver = FakeHomeserver(ok(fixture("register_available")))

    assert connect(homeserver, access_token=None).username_available("guest_doctor") is True
    assert path_of(homeserver.last) == "/_matrix/client/v3/register/available"
    assert homeserver.last.url.params["username"] == "guest_doctor"


def test_a_taken_username_is_not_available(connect):
    homeserver = FakeHomeserver(refused(400, "user_in_use"))

    assert connect(homeserver).username_available("guest_doctor") is False


@pytest.mark.parametrize(
    ("status", "name", "error"),
    [
        (400, "exclusive", ExclusiveNamespace),
        (400, "invalid_username", InvalidUsername),
        (403, "registration_disabled", Forbidden),
    ],
)
def test_a_username_nobody_may_register_raises_why(connect, status, name, error):
    homeserver = FakeHomeserver(refused(status, name))

    with pytest.raises(error):
        connect(homeserver).username_available("guest_doctor")


def test_appservice_ping_posts_the_transaction_id_under_v1(connect):
    homeserver = FakeHomeserver(ok(fixture("appservice_ping")))

    took = connect(homeserver).appservice_ping("guestgate main", transaction_id="doctor-1")

    assert took == 9
    assert homeserver.last.method == "POST"
    assert path_of(homeserver.last) == "/_matrix/client/v1/appservice/guestgate%20main/ping"
    assert body_of(homeserver.last) == {"transaction_id": "doctor-1"}


def test_appservice_ping_without_a_duration_answers_none(connect):
    homeserver = FakeHomeserver(ok({}))

    assert connect(homeserver).appservice_ping("guestgate-main") is None
    assert body_of(homeserver.last) == {}


@pytest.mark.parametrize(
    ("status", "name", "error", "errcode"),
    [
        (400, "ping_url_not_set", BadRequest, "M_URL_NOT_SET"),
        (403, "ping_mismatching_id", Forbidden, "M_FORBIDDEN"),
        (502, "ping_connection_failed", HomeserverUnavailable, "M_CONNECTION_FAILED"),
    ],
)
def test_a_failed_ping_keeps_the_homeservers_errcode(connect, sleeps, status, name, error, errcode):
    homeserver = FakeHomeserver(refused(status, name))

    with pytest.raises(error) as raised:
        connect(homeserver, retries=0).appservice_ping("guestgate-main")

    assert raised.value.errcode == errcode
    assert sleeps == []


def test_profile_reads_what_the_users_homeserver_says(connect):
    homeserver = FakeHomeserver(ok(fixture("profile")))

    profile = connect(homeserver).profile(GUEST)

    assert profile == Profile(GUEST, "Frank (Guest)", None)
    assert path_of(homeserver.last) == f"/_matrix/client/v3/profile/{GUEST_ESCAPED}"


def test_an_unknown_profile_is_not_found(connect):
    homeserver = FakeHomeserver(refused(404, "not_found_profile"))

    with pytest.raises(NotFound) as raised:
        connect(homeserver).profile(GUEST)

    assert raised.value.errcode == "M_NOT_FOUND"


# -- Desired-state verbs ---------------------------------------------------------------------


def test_ensure_invited_is_true_when_the_invite_is_accepted(connect):
    homeserver = FakeHomeserver(ok())

    assert connect(homeserver).ensure_invited(ROOM, GUEST, "approved") is True
    assert len(homeserver.requests) == 1


@pytest.mark.parametrize("membership", ["invite", "join"])
def test_ensure_invited_treats_already_invited_or_joined_as_success(connect, membership):
    homeserver = FakeHomeserver(
        refused(403, "forbidden_already_in_room"), ok({"membership": membership})
    )

    assert connect(homeserver).ensure_invited(ROOM, GUEST, "approved") is False


def test_ensure_invited_raises_when_the_user_is_banned(connect):
    homeserver = FakeHomeserver(
        httpx.Response(403, json={"errcode": "M_FORBIDDEN", "error": f"{GUEST} is banned"}),
        ok({"membership": "ban"}),
    )

    with pytest.raises(Forbidden, match="banned"):
        connect(homeserver).ensure_invited(ROOM, GUEST, "approved")


@pytest.mark.parametrize(
    "member_state", [refused(404, "not_found_event"), ok({"membership": "leave"})]
)
def test_ensure_kicked_treats_a_user_already_gone_as_success(connect, member_state):
    homeserver = FakeHomeserver(refused(403, "forbidden_target_not_in_room"), member_state)

    assert connect(homeserver).ensure_kicked(ROOM, GUEST, "denied") is False


def test_ensure_kicked_raises_when_the_knock_is_still_there(connect):
    homeserver = FakeHomeserver(
        refused(403, "forbidden_insufficient_power"), ok(fixture("member_knock_event"))
    )

    with pytest.raises(Forbidden, match="permission"):
        connect(homeserver).ensure_kicked(ROOM, GUEST, "denied")


def test_ensure_banned_treats_already_banned_as_success(connect):
    homeserver = FakeHomeserver(refused(403, "forbidden_banned"), ok({"membership": "ban"}))

    assert connect(homeserver).ensure_banned(ROOM, GUEST, "spam") is False


def test_ensure_joined_treats_already_joined_as_success(connect):
    homeserver = FakeHomeserver(
        httpx.Response(
            403, json={"errcode": "M_FORBIDDEN", "error": "You are not allowed to join this room"}
        ),
        ok({"membership": "join"}),
    )

    assert connect(homeserver).as_user(GUEST).ensure_joined(ROOM, [MAIN]) is False
    assert path_of(homeserver.last).endswith(f"/state/m.room.member/{GUEST_ESCAPED}")


# -- Client lifecycle --------------------------------------------------------------------------


def test_closing_a_masquerading_client_keeps_the_parents_pool_open(connect):
    homeserver = FakeHomeserver(ok(fixture("whoami_device")))
    with connect(homeserver) as client:
        with client.as_user(GUEST):
            pass
        assert client.whoami().user_id == GUEST
    assert AS_TOKEN not in repr(client)


# -- Power levels ----------------------------------------------------------------------------


def test_power_levels_apply_the_spec_defaults_to_an_empty_event():
    levels = PowerLevels.from_content({})

    assert (levels.invite, levels.kick, levels.ban, levels.redact) == (0, 50, 50, 50)
    assert (levels.state_default, levels.events_default, levels.users_default) == (50, 0, 0)
    assert levels.level_of(GUEST) == 0


def test_a_room_without_power_levels_gives_its_creator_100_and_state_to_everyone():
    levels = PowerLevels.from_content(None, creator=MODERATOR)

    assert levels.level_of(MODERATOR) == 100
    assert levels.may_ban(MODERATOR, GUEST)
    assert levels.may_send_state(GUEST, "m.room.name")
    assert not levels.may_kick(GUEST)


def test_invite_kick_and_ban_follow_their_levels():
    levels = PowerLevels.from_content(
        {"users": {MODERATOR: 100, BOT: 50}, "invite": 50, "kick": 50, "ban": 75}
    )

    assert levels.may_invite(BOT) and levels.may_kick(BOT)
    assert not levels.may_ban(BOT)
    assert levels.may_ban(MODERATOR)
    assert not levels.may_invite(GUEST)


def test_kicking_or_banning_someone_needs_a_higher_level_than_theirs():
    levels = PowerLevels.from_content({"users": {MODERATOR: 100, BOT: 50, "@peer:s": 50}})

    assert levels.may_kick(BOT, GUEST)
    assert not levels.may_kick(BOT, "@peer:s")
    assert not levels.may_ban(BOT, MODERATOR)


def test_sending_state_uses_the_events_override_before_state_default():
    levels = PowerLevels.from_content(fixture("power_levels_v12"))

    assert levels.may_send_state(BOT, "m.room.name")  # events: 50
    assert not levels.may_send_state(BOT, "m.room.power_levels")  # events: 100
    assert levels.may_send_state(BOT, "org.example.custom")  # state_default: 50
    assert not levels.may_send_state(GUEST, "org.example.custom")


def test_string_levels_of_old_rooms_are_read_and_junk_is_ignored():
    levels = PowerLevels.from_content(
        {"users": {BOT: "50", GUEST: "lots"}, "kick": " 20 ", "ban": True, "invite": None}
    )

    assert levels.level_of(BOT) == 50
    assert levels.level_of(GUEST) == 0
    assert (levels.kick, levels.ban, levels.invite) == (20, 50, 0)


def test_v12_creators_outrank_everyone_listed():
    levels = PowerLevels.from_content({"users": {BOT: 100}}, creators=[MODERATOR])

    assert levels.level_of(MODERATOR) > levels.level_of(BOT)
    assert levels.may_ban(MODERATOR, BOT)
    assert not levels.may_kick(BOT, MODERATOR)


# -- Synapse shared-secret registration (local homeserver pair only) -----------------------------


def test_register_with_shared_secret_proves_the_secret_with_synapses_mac():
    homeserver = FakeHomeserver(
        ok({"nonce": "n0nce"}),
        ok(
            {
                "user_id": MODERATOR,
                "home_server": MAIN,
                "access_token": "syt_mod",
                "device_id": "MODDEVICE",
            }
        ),
    )

    session = register_with_shared_secret(
        "http://main.test",
        shared_secret="main-shared-secret-local-test",
        username="mod",
        password="hunter2",
        admin=True,
        displayname="Moderator",
        transport=httpx.MockTransport(homeserver),
    )

    # The mac as Synapse's register_new_matrix_user computes it.
    expected = hmac.new(b"main-shared-secret-local-test", digestmod=hashlib.sha1)
    for part in (b"n0nce", b"\x00", b"mod", b"\x00", b"hunter2", b"\x00", b"admin"):
        expected.update(part)
    get_nonce, register = homeserver.requests
    assert (get_nonce.method, path_of(get_nonce)) == ("GET", "/_synapse/admin/v1/register")
    assert body_of(register) == {
        "nonce": "n0nce",
        "username": "mod",
        "password": "hunter2",
        "admin": True,
        "displayname": "Moderator",
        "mac": expected.hexdigest(),
    }
    assert (session.user_id, session.device_id, session.access_token) == (
        MODERATOR,
        "MODDEVICE",
        "syt_mod",
    )


# -- Synapse federation admin: the guest homeserver's backoff from main ------------------------


def test_reset_federation_connection_asks_synapse_to_forget_its_backoff():
    homeserver = FakeHomeserver(ok())

    reset = reset_federation_connection(
        "http://guest.test",
        access_token="admin_token",
        destination=MAIN,
        transport=httpx.MockTransport(homeserver),
    )

    (request,) = homeserver.requests
    assert reset is True
    assert request.method == "POST"
    assert path_of(request) == (
        "/_synapse/admin/v1/federation/destinations/localhost%3A28482/reset_connection"
    )
    assert request.headers["Authorization"] == "Bearer admin_token"
    assert body_of(request) == {}


@pytest.mark.parametrize(
    "answer",
    [
        # Synapse's answers when it is not backing off from the destination, or never met it.
        httpx.Response(
            400,
            json={
                "errcode": "M_UNKNOWN",
                "error": "The retry timing does not need to be reset for this destination.",
            },
        ),
        httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "Unknown destination"}),
    ],
    ids=["no-backoff", "unknown-destination"],
)
def test_reset_federation_connection_with_nothing_to_reset_is_no_error(answer):
    reset = reset_federation_connection(
        "http://guest.test",
        access_token="admin_token",
        destination=MAIN,
        transport=httpx.MockTransport(FakeHomeserver(answer)),
    )

    assert reset is False


def test_reset_federation_connection_by_a_non_admin_is_refused():
    answer = httpx.Response(
        403, json={"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}
    )

    with pytest.raises(Forbidden):
        reset_federation_connection(
            "http://guest.test",
            access_token="not_an_admin",
            destination=MAIN,
            transport=httpx.MockTransport(FakeHomeserver(answer)),
        )


# -- Identifiers -----------------------------------------------------------------------------


def test_identifiers_are_built_and_split_around_the_first_colon():
    assert ids.make_user_id("guest_x", "localhost:28481") == GUEST
    assert ids.server_name(GUEST) == "localhost:28481"
    assert ids.server_name(ROOM) is None


@pytest.mark.parametrize(
    ("text", "looks_like"),
    [
        ("@mod:localhost:28482", True),
        ("I am @mod:example.org", True),
        ("#call:example.org", True),
        ("Mona (Guest)", False),
        ("Mona: at home", False),
    ],
)
def test_text_that_contains_a_matrix_id_is_recognised(text, looks_like):
    assert ids.contains_matrix_id(text) is looks_like


# -- A room's state ---------------------------------------------------------------------------

CALL_MEMBER = "org.matrix.msc3401.call.member"


def state_entry(event_type: str, state_key: str, content: dict[str, Any], n: int) -> dict[str, Any]:
    """One event of Synapse's answer to GET /rooms/{roomId}/state."""
    return {
        "type": event_type,
        "state_key": state_key,
        "content": content,
        "sender": GUEST,
        "origin_server_ts": 1_764_500_000_000 + n,
        "event_id": f"$event{n}",
        "room_id": ROOM,
        "unsigned": {"age": 5},
    }


def test_state_events_are_the_rooms_current_events_of_one_type_retried_on_502(connect, sleeps):
    call_key = f"_{GUEST}_DEVICE_m.call"
    state = [
        state_entry("m.room.create", "", {"room_version": "12"}, 1),
        state_entry("m.room.member", GUEST, {"membership": "join"}, 2),
        state_entry(CALL_MEMBER, call_key, {"application": "m.call"}, 3),
        state_entry(CALL_MEMBER, f"_{GUEST}_OTHER_m.call", {}, 4),
    ]
    homeserver = FakeHomeserver(httpx.Response(502), ok(state))

    events = connect(homeserver).state_events(ROOM, CALL_MEMBER)

    assert [(e.state_key, e.event_id, dict(e.content)) for e in events] == [
        (call_key, "$event3", {"application": "m.call"}),
        (f"_{GUEST}_OTHER_m.call", "$event4", {}),
    ]
    assert events[0].origin_server_ts == 1_764_500_000_003
    assert path_of(homeserver.last) == "/_matrix/client/v3/rooms/%21AbCd1234/state"
    assert len(sleeps) == 1


def test_a_state_answer_that_is_not_a_list_is_the_homeserver_misbehaving(connect):
    homeserver = FakeHomeserver(ok({"chunk": []}))

    with pytest.raises(HomeserverUnavailable, match="not a list"):
        connect(homeserver, retries=0).state_events(ROOM, CALL_MEMBER)
