"""``manage.py doctor``: what an operator reads when a deployment works, and when it does not.

No homeserver here: addresses where nothing listens, and a small stand-in that answers with
Synapse's own error bodies, for the failures the doctor must put into words. The doctor runs
against the real local pair in the README's walk-through (and in the operator's shell).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from matrix import BadRequest, Forbidden, HomeserverUnavailable, NotFound
from ops import doctor
from ops.doctor import Check, Outcome
from rooms.messages import NOT_KNOCK_RULE, room_problem
from rooms.models import CallRoom

pytestmark = pytest.mark.django_db

GUEST_AS_TOKEN = "guest-as-token-doctor-test"
MAIN_AS_TOKEN = "main-as-token-doctor-test"
MAIN_HS_TOKEN = "main-hs-token-doctor-test"
GUEST_ADMIN_TOKEN = "guest-admin-token-doctor-test"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def nowhere(settings) -> str:
    """Both homeservers at an address where nothing listens, and tokens the tests know.

    Never the shared local pair: other tests use it, and these need none.
    """
    url = _closed_port_url()
    settings.GUEST_HS_URL = url
    settings.MAIN_HS_URL = url
    settings.GUEST_HS_SERVER_NAME = "guests.example.org"
    settings.MAIN_HS_SERVER_NAME = "example.org"
    settings.GUEST_AS_TOKEN = GUEST_AS_TOKEN
    settings.MAIN_AS_TOKEN = MAIN_AS_TOKEN
    settings.MAIN_HS_TOKEN = MAIN_HS_TOKEN
    settings.MAIN_BOT_LOCALPART = "guestgate"
    settings.GUEST_USER_PREFIX = "guest_"
    settings.MAIN_APPSERVICE_ID = "guestgate-main"
    settings.GUEST_ADMIN_TOKEN = GUEST_ADMIN_TOKEN
    settings.GUEST_ADMIN_TOKEN_FILE = ""  # a real deployment: no local admin
    return url


class _Homeserver(BaseHTTPRequestHandler):
    """Answers each ``METHOD /path`` (query ignored) from ``routes``; 404 M_UNRECOGNIZED else.

    An answer's body may hold ``{auth}``: the Authorization header it got, as a careless
    homeserver or proxy might echo it.
    """

    routes: ClassVar[dict[str, tuple[int, dict]]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = f"{self.command} {unquote(urlsplit(self.path).path)}"
        status, body = self.routes.get(
            key, (404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
        )
        text = json.dumps(body).replace("{auth}", self.headers.get("Authorization", ""))
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def homeserver(settings) -> Iterator[dict[str, tuple[int, dict]]]:
    """A stand-in for both homeservers; the test fills in its routes."""
    routes: dict[str, tuple[int, dict]] = {}
    handler = type("Handler", (_Homeserver,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.GUEST_HS_URL = url
    settings.MAIN_HS_URL = url
    yield routes
    server.shutdown()
    server.server_close()


WHOAMI = "GET /_matrix/client/v3/account/whoami"
PING = "POST /_matrix/client/v1/appservice/guestgate-main/ping"
ADMIN_USERS = "GET /_synapse/admin/v2/users"


def doctor_output() -> tuple[str, bool]:
    """The command's output and whether it exited with failure."""
    out = StringIO()
    try:
        call_command("doctor", stdout=out, stderr=StringIO(), no_color=True)
    except CommandError:
        return out.getvalue(), True
    return out.getvalue(), False


def line_of(output: str, label: str) -> str:
    for line in output.splitlines():
        if line[2:].startswith(label + " "):
            return line
    raise AssertionError(f"no line for {label!r} in:\n{output}")


# -- The command ---------------------------------------------------------------------------


def test_homeservers_down_fail_with_a_fix_and_exit_code_1(nowhere: str):
    output, failed = doctor_output()

    assert failed
    guest = line_of(output, "guest homeserver")
    assert guest.startswith("✗") and nowhere in guest and "does not answer" in guest
    assert "fix: Is GUEST_HS_URL the guest homeserver's client-server URL" in output
    # What depends on a homeserver is not tried, and says why.
    assert line_of(output, "guest appservice").startswith("\u2013")
    assert "not checked: guest homeserver did not pass" in line_of(output, "guest appservice")
    assert "not checked: main bot did not pass" in line_of(output, "main → GuestGate")


def test_what_works_here_is_ticked(nowhere: str):
    output, _ = doctor_output()

    assert line_of(output, "database").startswith("✓")
    assert line_of(output, "migrations").startswith("✓ migrations")
    assert "every migration is applied" in output
    assert line_of(output, "call rooms").startswith("✓")
    assert "no call room registered yet" in output


def test_missing_setting_is_named_with_its_hint(settings):
    settings.GUEST_AS_TOKEN = ""

    outcome = doctor.check_settings()

    assert outcome.ok is False
    assert "GUEST_AS_TOKEN is not set" in outcome.message
    assert "Set GUEST_AS_TOKEN to" in outcome.fix_hint
    assert doctor.check_guest_appservice() == Outcome(None, "GUEST_AS_TOKEN is not set")


def test_everything_passing_says_so(monkeypatch):
    monkeypatch.setattr(doctor, "CHECKS", (Check("one", lambda: doctor.passed("fine")),))

    output, failed = doctor_output()

    assert not failed
    assert output.splitlines() == ["✓ one  fine", "Everything GuestGate needs works."]


def test_a_crashing_check_is_a_failure_not_a_crash():
    def broken() -> Outcome:
        raise RuntimeError("unexpected\nsecond line")

    [(label, outcome)] = doctor.run_all([Check("broken", broken)])

    assert (label, outcome.ok) == ("broken", False)
    assert outcome.message == "the check itself failed: RuntimeError: unexpected"


# -- Tokens and namespaces, against Synapse's answers --------------------------------------


def test_unknown_appservice_token_points_at_the_registration(homeserver):
    homeserver[WHOAMI] = (401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised token"})

    guest = doctor.check_guest_appservice()
    main = doctor.check_main_bot()

    assert guest.ok is False and "does not know GUEST_AS_TOKEN" in guest.message
    assert "app_service_config_files" in guest.fix_hint
    assert "appservice_registration guest" in guest.fix_hint
    assert main.ok is False and "appservice_registration main" in main.fix_hint


def test_token_of_another_server_names_the_right_server_name(homeserver):
    homeserver[WHOAMI] = (200, {"user_id": "@guestgate:guests.example.net"})

    outcome = doctor.check_guest_appservice()

    assert outcome.ok is False
    assert "Set GUEST_HS_SERVER_NAME to 'guests.example.net'" in outcome.fix_hint


def test_main_token_must_be_the_bot(homeserver):
    homeserver[WHOAMI] = (200, {"user_id": "@someone:example.org"})

    outcome = doctor.check_main_bot()

    assert outcome.ok is False
    assert "expects its bot to be @guestgate:example.org" in outcome.message


def test_namespace_covering_the_prefix_passes(homeserver):
    # Synapse's answer to an appservice acting as an unregistered user of its namespace.
    homeserver[WHOAMI] = (
        403,
        {
            "errcode": "M_FORBIDDEN",
            "error": "Application service has not registered this user "
            "(@guest_doctor:guests.example.org)",
        },
    )

    outcome = doctor.check_guest_namespace()

    assert outcome == Outcome(
        True, "the appservice's namespace covers @guest_doctor:guests.example.org"
    )


def test_namespace_not_covering_the_prefix_fails_with_the_regex(homeserver):
    homeserver[WHOAMI] = (
        403,
        {
            "errcode": "M_FORBIDDEN",
            "error": "Application service cannot masquerade as this user "
            "(@guest_doctor:guests.example.org).",
        },
    )

    outcome = doctor.check_guest_namespace()

    assert outcome.ok is False
    assert "does not cover GUEST_USER_PREFIX='guest_'" in outcome.message
    assert "regex: '@guest_.*:guests.example.org'" in outcome.fix_hint


def test_a_user_token_instead_of_the_appservice_token_is_caught(homeserver):
    # A user's token ignores ?user_id= and answers with the user itself.
    homeserver[WHOAMI] = (200, {"user_id": "@alice:guests.example.org"})

    outcome = doctor.check_guest_namespace()

    assert outcome.ok is False
    assert "it is a user's access token" in outcome.message


@pytest.mark.parametrize(
    ("status", "body", "ok"),
    [
        (
            400,
            {"errcode": "M_EXCLUSIVE", "error": "This user ID is reserved by an appservice."},
            True,
        ),
        (403, {"errcode": "M_FORBIDDEN", "error": "Registration has been disabled"}, True),
        (200, {"available": True}, False),
        (400, {"errcode": "M_USER_IN_USE", "error": "User ID already taken."}, None),
        (429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests"}, None),
    ],
)
def test_sign_up_with_a_guest_name(homeserver, status, body, ok):
    homeserver["GET /_matrix/client/v3/register/available"] = (status, body)

    outcome = doctor.check_guest_namespace_exclusive()

    assert outcome.ok is ok
    if ok is False:
        assert "not exclusive" in outcome.message
        assert "exclusive: true" in outcome.fix_hint


def test_no_admin_token_means_no_reconciliation(settings):
    settings.GUEST_ADMIN_TOKEN = ""

    outcome = doctor.check_guest_admin()

    assert outcome.ok is False
    assert "reconciliation of guest accounts fails" in outcome.message
    assert "register_new_matrix_user -a" in outcome.fix_hint


@pytest.mark.parametrize(
    ("status", "body", "ok", "said"),
    [
        (200, {"users": [], "total": 0}, True, "lists accounts"),
        (403, {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}, False,
         "cannot list accounts (403 M_FORBIDDEN: You are not a server admin)"),
        (401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}, False,
         "cannot list accounts"),
        (404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, False,
         "no Synapse admin API at"),
    ],
)  # fmt: skip
def test_admin_token_lists_accounts(homeserver, status, body, ok, said):
    homeserver[ADMIN_USERS] = (status, body)

    outcome = doctor.check_guest_admin()

    assert outcome.ok is ok
    assert said in outcome.message


# -- Main's pushes: the appservice ping ----------------------------------------------------


def test_ping_answered_passes(homeserver):
    homeserver[PING] = (200, {"duration_ms": 12})

    assert doctor.check_main_pushes() == Outcome(
        True, "main pinged GuestGate's appservice URL with its hs_token (12 ms)"
    )


@pytest.mark.parametrize(
    ("status", "errcode", "error", "in_message", "in_hint"),
    [
        (
            400,
            "M_URL_NOT_SET",
            "The application service does not have a URL set",
            "has no url",
            "appservice_registration main --url",
        ),
        (
            502,
            "M_CONNECTION_FAILED",
            "ConnectionRefusedError: Connection was refused by other side: 111.",
            "main cannot reach GuestGate's appservice URL",
            "web server must be running",
        ),
        (504, "M_CONNECTION_TIMEOUT", "Timed out", "cannot reach", "http://web:8000"),
        (502, "M_BAD_STATUS", "HTTP 403 Forbidden", "refused the ping", "MAIN_HS_TOKEN must equal"),
        (
            502,
            "M_CONNECTION_FAILED",
            "PartialDownloadError: 400 Bad Request",
            "refused the ping",
            "GUESTGATE_ALLOWED_HOSTS",
        ),
        (502, "M_BAD_STATUS", "HTTP 404 Not Found", "refused the ping", "is not GuestGate"),
        (
            403,
            "M_FORBIDDEN",
            "Mismatching application service ID in path",
            "is not called 'guestgate-main'",
            "Set MAIN_APPSERVICE_ID",
        ),
    ],
)
def test_ping_failures_in_words(homeserver, status, errcode, error, in_message, in_hint):
    homeserver[PING] = (status, {"errcode": errcode, "error": error})

    outcome = doctor.check_main_pushes()

    assert outcome.ok is False
    assert in_message in outcome.message
    assert in_hint in outcome.fix_hint


def test_ping_unsupported_is_not_a_failure(homeserver):
    outcome = doctor.check_main_pushes()  # the stand-in answers 404 M_UNRECOGNIZED

    assert outcome.ok is None
    assert "does not offer the appservice ping" in outcome.message


def test_ping_to_nowhere_says_main_did_not_answer():
    outcome = doctor.check_main_pushes()

    assert outcome.ok is False
    assert outcome.message.startswith("main did not answer the ping")


@pytest.mark.parametrize(
    ("error", "ok"),
    [
        (NotFound("Profile was not found", status=404, errcode="M_NOT_FOUND"), True),
        (HomeserverUnavailable("Failed to fetch profile", status=502, errcode="M_UNKNOWN"), False),
        (Forbidden("Profile lookup over federation is disabled", status=403), None),
        (BadRequest("odd", status=400), False),
        # An endpoint the homeserver does not know is no answer from the other server.
        (NotFound("Unrecognized request", status=404, errcode="M_UNRECOGNIZED"), False),
    ],
)
def test_federation_by_profile_lookup(homeserver, error, ok):
    path = "GET /_matrix/client/v3/profile/@guestgate:example.org"
    homeserver[path] = (error.status, {"errcode": error.errcode or "M_X", "error": error.message})

    outcome = doctor.check_federation_guest_to_main()

    assert outcome.ok is ok
    if ok is False and error.status == 502:
        assert "cannot reach main over federation" in outcome.message
        assert "ip_range_whitelist" in outcome.fix_hint


def test_no_token_reaches_the_output_even_when_echoed(homeserver):
    echo = {"errcode": "M_UNKNOWN", "error": "bad request with {auth}"}
    for key in (
        WHOAMI,
        PING,
        "GET /_matrix/client/v3/register/available",
        "GET /_matrix/client/v3/profile/@guestgate:example.org",
        ADMIN_USERS,
    ):
        homeserver[key] = (400, echo)
    homeserver["GET /_matrix/client/versions"] = (200, {"versions": ["v1.12"]})

    output, failed = doctor_output()
    # The checks behind a failed one do not run in the command: ask them directly too.
    direct = [doctor.check_main_pushes(), doctor.check_federation_guest_to_main()]

    assert failed
    everything = output + repr(direct)
    assert "Bearer" in everything  # the echo did come back
    for token in (GUEST_AS_TOKEN, MAIN_AS_TOKEN, MAIN_HS_TOKEN, GUEST_ADMIN_TOKEN):
        assert token not in everything


# -- Call rooms ----------------------------------------------------------------------------


def _room(room_id: str, name: str, status: str, problems: list[dict[str, object]]) -> CallRoom:
    return CallRoom.objects.create(
        room_id=room_id,
        name=name,
        status=status,
        problems=problems,
        registered_by="@mona:example.org",
        checked_at=timezone.now(),
    )


def test_rooms_that_are_not_ready_are_listed_with_their_problems():
    _room("!ready", "Team call", CallRoom.Status.READY, [])
    problem = room_problem(NOT_KNOCK_RULE, join_rule="invite")
    _room("!knockless", "Board", CallRoom.Status.PROBLEM, [problem])

    outcome = doctor.check_call_rooms()

    assert outcome.ok is False
    assert outcome.message == (
        "1 of 2 call room(s) not ready: Board (!knockless): The room's join rule is “invite”. "
        "Guests can only ask to join a room set to “Ask to join” (join rule knock)."
    )
    assert "Check again" in outcome.fix_hint


def test_all_rooms_ready():
    _room("!ready", "Team call", CallRoom.Status.READY, [])

    assert doctor.check_call_rooms() == Outcome(True, "1 call room(s), all ready for guests")


# -- The call: its focus (LiveKit JWT services) and delayed events --------------------------

GUEST_SENDER = "@guestgate:guests.example.org"
OPENID = f"POST /_matrix/client/v3/user/{GUEST_SENDER}/openid/request_token"
VERSIONS = "GET /_matrix/client/versions"
ORIGIN = "https://guestgate.example.org"


class _JwtService(BaseHTTPRequestHandler):
    """Just enough of lk-jwt-service: the CORS preflight and ``POST /sfu/get``, as told by
    ``behaviour``; it records what it was sent."""

    behaviour: ClassVar[dict[str, object]] = {}
    received: ClassVar[list[tuple[str, dict[str, str], dict]]] = []

    def do_OPTIONS(self) -> None:
        if self.path != "/sfu/get":
            self._reply(404, {})
            return
        cors = self.behaviour.get("cors", True)
        self._reply(405 if not cors else 200, {}, cors=bool(cors))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.received.append((self.path, dict(self.headers), body))
        grant = self.behaviour.get(
            "grant", (200, {"url": "wss://livekit.example.org", "jwt": "e30.e30.sig"})
        )
        assert isinstance(grant, tuple)
        status, answer = grant
        self._reply(status, answer, cors=bool(self.behaviour.get("cors", True)))

    def _reply(self, status: int, body: dict, *, cors: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if cors:  # what lk-jwt-service sends: any origin, POST, the headers EC uses
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST")
            self.send_header("Access-Control-Allow-Headers", "Accept, Content-Type")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def jwt_service(settings) -> Iterator[type[_JwtService]]:
    """A JWT service stand-in, configured as GuestGate's only focus."""
    handler = type("Handler", (_JwtService,), {"behaviour": {}, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.RTC_TRANSPORTS = [{"type": "livekit", "livekit_service_url": url}]
    settings.PUBLIC_URL = ORIGIN
    yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def guest_openid(homeserver) -> None:
    """The guest homeserver gives its appservice's user an OpenID token."""
    homeserver[WHOAMI] = (200, {"user_id": GUEST_SENDER})
    homeserver[OPENID] = (
        200,
        {
            "access_token": "openid-token-doctor-test",
            "token_type": "Bearer",
            "matrix_server_name": "guests.example.org",
            "expires_in": 3600,
        },
    )


def test_no_jwt_service_means_the_embedded_call_cannot_start_and_says_what_to_set(settings):
    settings.RTC_TRANSPORTS = []

    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert "no LiveKit JWT service is configured" in outcome.message
    assert "GUESTGATE_LIVEKIT_SERVICE_URLS" in outcome.fix_hint


def test_no_jwt_service_is_fine_when_the_call_opens_elsewhere(settings):
    settings.RTC_TRANSPORTS = []
    settings.CALL_MODE = "link"

    assert doctor.check_call_focus().ok is True


@pytest.mark.usefixtures("guest_openid")
def test_a_jwt_service_that_answers_cors_and_grants_a_token_passes(jwt_service):
    outcome = doctor.check_call_focus()

    assert outcome.ok is True, outcome
    [(path, headers, body)] = jwt_service.received
    assert path == "/sfu/get"
    assert headers["Origin"] == ORIGIN
    assert body["openid_token"]["access_token"] == "openid-token-doctor-test"
    assert body["openid_token"]["matrix_server_name"] == "guests.example.org"
    assert body["device_id"] == doctor.DOCTOR_DEVICE_ID
    assert body["room"] == "!guestgate-doctor:example.org"


@pytest.mark.usefixtures("guest_openid")
def test_an_unreachable_jwt_service_is_named_with_what_to_check(settings):
    url = _closed_port_url()
    settings.RTC_TRANSPORTS = [{"type": "livekit", "livekit_service_url": url}]

    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert outcome.message.startswith(f"the LiveKit JWT service at {url} does not answer")
    assert "GUESTGATE_LIVEKIT_SERVICE_URLS" in outcome.fix_hint


@pytest.mark.usefixtures("guest_openid")
def test_a_jwt_service_without_cors_for_guestgate_is_caught_before_any_token(jwt_service):
    jwt_service.behaviour["cors"] = False

    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert "does not allow calls from GuestGate's origin (CORS preflight: HTTP 405" in (
        outcome.message
    )
    assert "pass OPTIONS through" in outcome.fix_hint and ORIGIN in outcome.fix_hint
    assert jwt_service.received == []


@pytest.mark.usefixtures("guest_openid")
def test_a_jwt_service_refusing_the_guest_servers_token_points_at_federation(jwt_service):
    jwt_service.behaviour["grant"] = (
        401,
        {"errcode": "M_UNAUTHORIZED", "error": "The request could not be authorised."},
    )

    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert "refused the guest homeserver's OpenID token (401 M_UNAUTHORIZED" in outcome.message
    assert "guests.example.org" in outcome.fix_hint and "federation" in outcome.fix_hint


@pytest.mark.usefixtures("guest_openid")
def test_a_jwt_service_answering_200_without_a_jwt_is_a_failure(jwt_service):
    jwt_service.behaviour["grant"] = (200, {"url": "wss://livekit.example.org"})

    assert doctor.check_call_focus().ok is False


def test_no_openid_token_from_the_guest_homeserver_is_a_failure(homeserver, jwt_service):
    homeserver[WHOAMI] = (200, {"user_id": GUEST_SENDER})
    homeserver[OPENID] = (403, {"errcode": "M_FORBIDDEN", "error": "nope"})

    outcome = doctor.check_call_focus()

    assert outcome.ok is False
    assert "gave no OpenID token: 403 M_FORBIDDEN" in outcome.message


@pytest.mark.parametrize(
    ("features", "warned"),
    [({"org.matrix.msc4140": True}, False), ({}, True), ({"org.matrix.msc4140": False}, True)],
)
def test_a_guest_homeserver_without_delayed_events_is_warned_about(homeserver, features, warned):
    homeserver[VERSIONS] = (200, {"versions": ["v1.12"], "unstable_features": features})

    outcome = doctor.check_delayed_events()

    assert outcome.ok is True
    assert ("stay in the call for 4 hours" in outcome.message) is warned
    assert ("max_event_delay_duration" in outcome.fix_hint) is warned


def test_a_warning_passes_and_shows_its_fix(monkeypatch):
    monkeypatch.setattr(
        doctor, "CHECKS", (Check("one", lambda: doctor.warned("could be better", "do this")),)
    )

    output, failed = doctor_output()

    assert not failed
    assert output.splitlines() == [
        "! one  could be better",
        "       fix: do this",
        "Everything GuestGate needs works.",
    ]
