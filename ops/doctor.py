"""``manage.py doctor``: does this deployment work, end to end? In words an operator can act on.

Each check is a small function returning an `Outcome`: ``ok`` (True, False, or None when it
could not be checked), what was found, and for a failure how to fix it. Unlike ``/healthz``
(public, for load balancers) the doctor is run by the operator in a shell, so it names URLs
and setting names freely; it never prints a token.

Everything it does is harmless on a live deployment: it reads, asks ``whoami``, asks whether
a user name is free, lists one account with the admin token, looks up a profile over
federation and pings the appservice. It creates no account and no room (on the local pair
only, the admin check makes the pair's admin once, as reconciliation would).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.core.checks import ERROR, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from guestgate.homeservers import guest_admin_token
from matrix import (
    ExclusiveNamespace,
    Forbidden,
    HomeserverUnavailable,
    MatrixClient,
    MatrixError,
    NotFound,
    RateLimited,
    UnknownToken,
    list_users,
)
from matrix.ids import make_user_id, server_name
from matrix.rtc import jwt_service_grant
from matrix.types import OpenIdToken
from ops import callfocus, health
from rooms.models import CallRoom
from rooms.selectors import call_room_problems

#: Seconds for each homeserver request (no retries: the doctor reports, it does not insist).
TIMEOUT_SECONDS = 10.0
#: The appservice ping waits for main, which waits for GuestGate: allow for main's own timeout.
PING_TIMEOUT_SECONDS = 20.0

_HTTP_STATUS = re.compile(r"\b([1-5]\d\d)\b")
_REGISTRATION_HINT = "python manage.py appservice_registration {role} writes a matching file"


class Outcome(NamedTuple):
    """The result of one check: ``ok`` is None when it could not be checked (not a failure)."""

    ok: bool | None
    message: str
    fix_hint: str = ""


def passed(message: str) -> Outcome:
    return Outcome(True, message)


def failed(message: str, fix_hint: str) -> Outcome:
    return Outcome(False, message, fix_hint)


def not_checked(message: str) -> Outcome:
    return Outcome(None, message)


def warned(message: str, fix_hint: str) -> Outcome:
    """Works, but not as well as it should: passes, and the command shows the fix."""
    return Outcome(True, message, fix_hint)


# -- GuestGate itself ----------------------------------------------------------------------


def check_settings() -> Outcome:
    """Django's system checks, GuestGate's among them (``guestgate.checks``)."""

    problems = [message for message in run_checks() if message.level >= ERROR]
    if not problems:
        return passed("every required setting is present")
    return failed(
        "; ".join(str(problem.msg) for problem in problems),
        " ".join(str(problem.hint) for problem in problems if problem.hint)
        or "See python manage.py check.",
    )


def check_database() -> Outcome:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver's error; its text never holds the password
        return failed(
            f"cannot query the {connection.vendor} database: {_first_line(exc)}",
            "Is DATABASE_URL right, and is the database server running and reachable from "
            "here? (docker compose: is the postgres service healthy?)",
        )
    return passed(f"{connection.vendor} answers")


def check_migrations() -> Outcome:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return passed("every migration is applied")
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return failed(
        f"{len(names)} migration(s) not applied: {shown}",
        "Run python manage.py migrate (docker compose runs the migrate service before web, "
        "worker and beat start).",
    )


def check_broker() -> Outcome:
    result = health.check_broker()
    if result.ok:
        return passed(result.detail)
    return failed(
        result.detail,
        "Is CELERY_BROKER_URL (or REDIS_URL) right, and is Redis running? Without the broker "
        "no guest is provisioned or let in: the web pages queue work for the worker there.",
    )


# -- The homeservers -----------------------------------------------------------------------


def check_guest_homeserver() -> Outcome:
    return _reachable(
        "GUEST_HS_URL",
        settings.GUEST_HS_URL,
        "the guest homeserver",
        "Is GUEST_HS_URL the guest homeserver's client-server URL as GuestGate reaches it "
        "(e.g. http://synapse-guest:8008), and is Synapse running?",
    )


def check_main_homeserver() -> Outcome:
    return _reachable(
        "MAIN_HS_URL",
        settings.MAIN_HS_URL,
        "the main homeserver",
        "Is MAIN_HS_URL the main homeserver's client-server URL as GuestGate reaches it "
        "(e.g. http://synapse-main:8008), and is Synapse running?",
    )


def _reachable(setting: str, url: str, what: str, hint: str) -> Outcome:
    if not url:
        return not_checked(f"{setting} is not set")
    result = health.check_homeserver(url)
    if result.ok:
        return passed(f"{url} {result.detail}")
    return failed(f"{what} at {url} does not answer: {result.detail}", hint)


def check_guest_appservice() -> Outcome:
    """``whoami`` with GUEST_AS_TOKEN: the guest homeserver knows GuestGate's appservice."""
    if not settings.GUEST_AS_TOKEN:
        return not_checked("GUEST_AS_TOKEN is not set")
    expected = make_user_id(settings.MAIN_BOT_LOCALPART, settings.GUEST_HS_SERVER_NAME)
    registration = _REGISTRATION_HINT.format(role="guest")
    try:
        with _client(settings.GUEST_HS_URL, settings.GUEST_AS_TOKEN) as client:
            user_id = client.whoami().user_id
    except UnknownToken:
        return failed(
            "the guest homeserver does not know GUEST_AS_TOKEN",
            "GUEST_AS_TOKEN must be the as_token of a registration file listed in the guest "
            "homeserver's app_service_config_files; restart Synapse after adding it "
            f"({registration}).",
        )
    except MatrixError as error:
        return failed(f"whoami failed: {_said(error)}", "See the guest homeserver's log.")
    if server_name(user_id) != settings.GUEST_HS_SERVER_NAME:
        return failed(
            f"the token belongs to {user_id}, but GUEST_HS_SERVER_NAME is "
            f"{settings.GUEST_HS_SERVER_NAME!r}",
            f"Set GUEST_HS_SERVER_NAME to {server_name(user_id)!r} (the server_name in the guest "
            "homeserver's homeserver.yaml), and check that GUEST_HS_URL is the guest homeserver.",
        )
    if user_id != expected:
        # Harmless on the guest homeserver: GuestGate never acts as the sender there.
        return passed(f"the appservice token works (its sender is {user_id}, not {expected})")
    return passed(f"the appservice token works: whoami says {user_id}")


def guest_probe_user_id() -> str:
    """A user id in GuestGate's guest namespace that no guest gets (guests get random names)."""
    return make_user_id(f"{settings.GUEST_USER_PREFIX}doctor", settings.GUEST_HS_SERVER_NAME)


def check_guest_namespace() -> Outcome:
    """Does the appservice's user namespace cover ``@<GUEST_USER_PREFIX>…``?

    The appservice asks ``whoami`` as an unregistered user inside the namespace. The spec
    answers 403 both when the user is outside the namespace and when it is not registered;
    Synapse's message tells the two apart ("cannot masquerade" versus "has not registered").
    Nothing is created. Spec:
    https://spec.matrix.org/v1.16/application-service-api/#identity-assertion
    """
    probe = guest_probe_user_id()
    try:
        with _client(settings.GUEST_HS_URL, settings.GUEST_AS_TOKEN) as client:
            user_id = client.as_user(probe).whoami().user_id
    except Forbidden as error:
        if "has not registered" in error.message:
            return passed(f"the appservice's namespace covers {probe}")
        if "cannot masquerade" in error.message:
            return failed(
                f"the appservice may not act as {probe}: its user namespace does not cover "
                f"GUEST_USER_PREFIX={settings.GUEST_USER_PREFIX!r}",
                "The registration on the guest homeserver needs namespaces.users "
                f"[{{exclusive: true, regex: '@{settings.GUEST_USER_PREFIX}.*:"
                f"{settings.GUEST_HS_SERVER_NAME}'}}] (dots escaped), or set GUEST_USER_PREFIX "
                f"to match it; {_REGISTRATION_HINT.format(role='guest')}.",
            )
        return not_checked(f"could not tell from this homeserver's answer: {_said(error)}")
    except MatrixError as error:
        return failed(
            f"whoami as {probe} failed: {_said(error)}", "See the guest homeserver's log."
        )
    if user_id == probe:
        return passed(f"the appservice's namespace covers {probe}")
    return failed(
        f"GUEST_AS_TOKEN acts as {user_id} whatever user it asks for: it is a user's access "
        "token, not an appservice's as_token",
        f"Set GUEST_AS_TOKEN to the as_token of GuestGate's registration on the guest "
        f"homeserver ({_REGISTRATION_HINT.format(role='guest')}).",
    )


def check_guest_namespace_exclusive() -> Outcome:
    """Can anyone else sign up with a guest's name? ``GET /register/available`` tells.

    Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3registeravailable
    """
    localpart = f"{settings.GUEST_USER_PREFIX}doctor"
    try:
        with _client(settings.GUEST_HS_URL, None) as client:
            available = client.username_available(localpart)
    except ExclusiveNamespace:
        return passed(f"{localpart} is reserved for an appservice (exclusive namespace)")
    except Forbidden:
        return passed("open registration is off: only appservices create accounts there")
    except MatrixError as error:
        return not_checked(f"could not tell: {_said(error)}")
    if not available:
        return not_checked(f"could not tell: someone has already registered {localpart}")
    return failed(
        f"anyone may sign up as {localpart} on the guest homeserver: GuestGate's namespace is "
        "not exclusive",
        "Set exclusive: true on the users namespace of GuestGate's registration on the guest "
        "homeserver, and restart Synapse.",
    )


def check_guest_admin() -> Outcome:
    """The hourly reconciliation lists guest accounts with Synapse's admin API.

    Docs: https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
    """

    try:
        token = guest_admin_token()
    except ImproperlyConfigured:
        return failed(
            "GUEST_ADMIN_TOKEN is not set: the hourly reconciliation of guest accounts fails",
            "Make an admin on the guest homeserver (register_new_matrix_user -a, with its "
            "registration_shared_secret), sign in as it and set GUEST_ADMIN_TOKEN to that "
            "access token.",
        )
    users = list_users(
        settings.GUEST_HS_URL,
        access_token=token,
        name_contains="",
        page_size=1,
        timeout=TIMEOUT_SECONDS,
    )
    try:
        with closing(users):
            next(users, None)  # one page of one account is enough
    except MatrixError as error:
        error.redact(token)
        if isinstance(error, UnknownToken | Forbidden):
            return failed(
                f"GUEST_ADMIN_TOKEN cannot list accounts ({_said(error)})",
                "It must be the access token of a server admin of the guest homeserver, "
                "still signed in.",
            )
        if isinstance(error, NotFound):
            return failed(
                f"no Synapse admin API at {settings.GUEST_HS_URL} ({_said(error)})",
                "GUEST_HS_URL must reach Synapse's client listener directly (a proxy in "
                "between may hide /_synapse/admin, as it should from the public).",
            )
        return failed(f"listing accounts failed: {_said(error)}", "See the guest homeserver's log.")
    return passed("GUEST_ADMIN_TOKEN lists accounts (for the hourly reconciliation)")


def check_main_bot() -> Outcome:
    """``whoami`` with MAIN_AS_TOKEN must be GuestGate's bot, the user in every call room."""
    if not settings.MAIN_AS_TOKEN:
        return not_checked("MAIN_AS_TOKEN is not set")
    expected = make_user_id(settings.MAIN_BOT_LOCALPART, settings.MAIN_HS_SERVER_NAME)
    try:
        with _client(settings.MAIN_HS_URL, settings.MAIN_AS_TOKEN) as client:
            user_id = client.whoami().user_id
    except UnknownToken:
        return failed(
            "the main homeserver does not know MAIN_AS_TOKEN",
            "MAIN_AS_TOKEN must be the as_token of a registration file listed in the main "
            "homeserver's app_service_config_files; restart Synapse after adding it "
            f"({_REGISTRATION_HINT.format(role='main')}).",
        )
    except MatrixError as error:
        return failed(f"whoami failed: {_said(error)}", "See the main homeserver's log.")
    if user_id != expected:
        return failed(
            f"the token acts as {user_id}, but GuestGate expects its bot to be {expected}",
            "MAIN_BOT_LOCALPART must be the registration's sender_localpart and "
            "MAIN_HS_SERVER_NAME the main homeserver's server_name.",
        )
    return passed(f"the bot's token works: whoami says {user_id}")


def check_main_pushes() -> Outcome:
    """Main pings GuestGate's appservice URL (``/_matrix/app/v1/ping``) on our request.

    This is the path of every push (knocks, joins, leaves): main's registration ``url``, as
    main reaches it, and ``hs_token``. Spec (Matrix 1.7, MSC2659):
    https://spec.matrix.org/v1.16/application-service-api/#post_matrixclientv1appserviceappserviceidping
    """
    appservice_id = settings.MAIN_APPSERVICE_ID
    transaction_id = f"guestgate-doctor-{secrets.token_hex(6)}"
    try:
        with _client(
            settings.MAIN_HS_URL, settings.MAIN_AS_TOKEN, timeout=PING_TIMEOUT_SECONDS
        ) as client:
            duration = client.appservice_ping(appservice_id, transaction_id=transaction_id)
    except MatrixError as error:
        error.redact(settings.MAIN_HS_TOKEN)  # main may quote GuestGate's answer to it
        return _ping_failure(error, appservice_id)
    took = f" ({duration} ms)" if duration is not None else ""
    return passed(f"main pinged GuestGate's appservice URL with its hs_token{took}")


def _ping_failure(error: MatrixError, appservice_id: str) -> Outcome:
    said = _said(error)
    url_hint = (
        "The url in main's registration must be GuestGate as main reaches it (docker compose: "
        "http://web:8000), and GuestGate's web server must be running."
    )
    if error.errcode == "M_URL_NOT_SET":
        return failed(
            "main's registration has no url, so main pushes nothing to GuestGate",
            "Set url in main's registration to GuestGate's address as main reaches it, and "
            "restart Synapse (python manage.py appservice_registration main --url URL).",
        )
    answered = error.errcode == "M_BAD_STATUS" or (
        # Synapse reports a refusal without a JSON body ("PartialDownloadError: 400 Bad
        # Request", Django's answer to a host name it does not serve) as a failed connection.
        error.errcode == "M_CONNECTION_FAILED" and "PartialDownloadError" in error.message
    )
    if answered:
        return failed(
            f"main reached the registration's url, which refused the ping ({said})",
            _bad_status_hint(error.message),
        )
    if error.errcode in ("M_CONNECTION_FAILED", "M_CONNECTION_TIMEOUT"):
        return failed(f"main cannot reach GuestGate's appservice URL ({said})", url_hint)
    if isinstance(error, Forbidden) and "Mismatching" in error.message:
        return failed(
            f"main's registration for MAIN_AS_TOKEN is not called {appservice_id!r}",
            "Set MAIN_APPSERVICE_ID to the id in GuestGate's registration file on main.",
        )
    if isinstance(error, NotFound):
        return not_checked(f"main does not offer the appservice ping (Matrix 1.7): {said}")
    if isinstance(error, HomeserverUnavailable) and error.status is None:
        return failed(
            f"main did not answer the ping ({said})",
            f"If main is up, it may be waiting (longer than {PING_TIMEOUT_SECONDS:g} s) for a "
            f"registration url that does not answer. {url_hint}",
        )
    return failed(f"the ping failed: {said}", "See the main homeserver's log.")


def _bad_status_hint(message: str) -> str:
    """What GuestGate's refusal of main's ping means, by its HTTP status in Synapse's message."""
    status = _HTTP_STATUS.search(message)
    code = int(status.group(1)) if status else 0
    if code in (401, 403):
        return (
            "GuestGate refused main's hs_token: MAIN_HS_TOKEN must equal hs_token in main's "
            "registration file."
        )
    if code == 400:
        return (
            "GuestGate refused the host name in the registration's url: add that host "
            "(e.g. web) to GUESTGATE_ALLOWED_HOSTS."
        )
    if code in (404, 405):
        return (
            "The registration's url is not GuestGate (or has a path): it must be GuestGate's "
            "base address, to which main appends /_matrix/app/v1/..."
        )
    if 300 <= code < 400:
        return (
            "The url redirects and Synapse does not follow redirects: use the address it "
            "redirects to."
        )
    return "See GuestGate's log for the request from main."


def check_pushes_applied() -> Outcome:
    """What main pushed was applied, and nothing main did went missing (``/healthz``'s check:
    the minute's reconciliation compares each call room's members on main with the pushes)."""
    check = health.check_appservice_pushes()
    if check.ok:
        return passed(check.detail)
    return failed(
        check.detail,
        "Main retries a transaction GuestGate refused and holds back every later one: look for "
        "4xx answers to /_matrix/app/v1/transactions in main's log and GuestGate's.",
    )


def check_federation_guest_to_main() -> Outcome:
    """The guest homeserver asks main for the bot's profile over federation (a knock's way)."""
    target = make_user_id(settings.MAIN_BOT_LOCALPART, settings.MAIN_HS_SERVER_NAME)
    return _federation(
        settings.GUEST_HS_URL, settings.GUEST_AS_TOKEN, target, "the guest homeserver", "main"
    )


def check_federation_main_to_guest() -> Outcome:
    """Main asks the guest homeserver for a profile over federation (an invite's way)."""
    target = make_user_id(settings.MAIN_BOT_LOCALPART, settings.GUEST_HS_SERVER_NAME)
    return _federation(
        settings.MAIN_HS_URL, settings.MAIN_AS_TOKEN, target, "main", "the guest homeserver"
    )


def _federation(base_url: str, token: str, target: str, source: str, other: str) -> Outcome:
    """Look up ``target``'s profile through ``source``: only ``other`` can answer it.

    A profile or a 404 came from ``other``, so federation works; 502 or 504 means ``source``
    could not reach it. Spec:
    https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
    """
    try:
        with _client(base_url, token) as client:
            client.profile(target)
    except MatrixError as error:
        if isinstance(error, NotFound) and error.errcode == "M_NOT_FOUND":
            # Answered by the other server: that user has no profile, which is fine.
            return passed(f"{source} reached {other} (it has no profile for {target})")
        if isinstance(error, HomeserverUnavailable):
            return failed(
                f"{source} cannot reach {other} over federation ({_said(error)})",
                "Federation is HTTPS to the port in the server name (or where its .well-known "
                "or SRV record delegates it), with a certificate the other server trusts; "
                "private and loopback addresses are blocked unless listed in "
                "ip_range_whitelist. Synapse waits before retrying a server that failed, so "
                "restart it after a fix. Its log says why.",
            )
        if isinstance(error, Forbidden | RateLimited):
            return not_checked(f"could not tell: {_said(error)}")
        return failed(f"the profile lookup failed: {_said(error)}", f"See {source}'s log.")
    return passed(f"{source} reached {other} (profile of {target})")


# -- Call rooms ----------------------------------------------------------------------------


def check_call_rooms() -> Outcome:

    total = CallRoom.objects.count()
    if total == 0:
        return passed("no call room registered yet")
    broken = list(CallRoom.objects.exclude(status=CallRoom.Status.READY).order_by("pk"))
    if not broken:
        return passed(f"{total} call room(s), all ready for guests")
    described = "; ".join(
        f"{room.name or 'unnamed'} ({room.room_id}): "
        f"{' '.join(call_room_problems(room)) or room.status}"
        for room in broken
    )
    return failed(
        f"{len(broken)} of {total} call room(s) not ready: {described}",
        "Fix what each room lists (in a Matrix client, as someone with enough power), then "
        "press 'Check again' on the room's page of the moderator dashboard.",
    )


# -- The call ------------------------------------------------------------------------------

#: The room the doctor asks a JWT service about: no real call's (a service that creates
#: LiveKit rooms for full-access homeservers makes an empty one, which LiveKit closes).
DOCTOR_CALL_ROOM = "!guestgate-doctor"
DOCTOR_DEVICE_ID = "GUESTGATEDOCTOR"

_SERVICE_URL_HINT = (
    "GUESTGATE_LIVEKIT_SERVICE_URLS must be the LiveKit JWT service's (lk-jwt-service) URL as "
    "guests' browsers reach it (public, https), not LiveKit's own; is the service running?"
)


def check_call_focus() -> Outcome:
    """Each LiveKit JWT service as Element Call in a guest's lobby uses it: reachable, CORS for
    GuestGate's origin, and a LiveKit JWT for an OpenID token of the guest homeserver.

    The OpenID token is the guest appservice's own user's (it needs no guest account); the
    service checks it with the guest homeserver over federation, as it will a guest's. Media
    (the LiveKit server itself) is not checked. MSC4195, CALL-LAB §4 and §5.
    """
    urls = callfocus.jwt_service_urls()
    if not urls:
        if not callfocus.embedded_call():
            return passed("no LiveKit JWT service: the call opens elsewhere (link mode)")
        return failed(
            "no LiveKit JWT service is configured: Element Call in the lobby cannot start the "
            "call (it says MISSING_MATRIX_RTC_TRANSPORT)",
            "Run LiveKit and its JWT service (element-hq/lk-jwt-service; docker-compose.yml "
            "has both) and set GUESTGATE_LIVEKIT_SERVICE_URLS to the service's public URL, "
            "e.g. https://livekit-jwt.example.org.",
        )
    try:
        with _client(settings.GUEST_HS_URL, settings.GUEST_AS_TOKEN) as client:
            openid = client.openid_token(client.whoami().user_id)
    except MatrixError as error:
        return failed(
            f"the guest homeserver gave no OpenID token: {_said(error)}",
            "Guests need one for the call; see the guest homeserver's log.",
        )
    for url in urls:
        problem = _jwt_service_problem(url, openid)
        if problem is not None:
            return problem
    return passed(
        f"{', '.join(urls)}: CORS for {callfocus.call_origin()}, and a LiveKit JWT for the "
        "guest homeserver's OpenID token (media not checked)"
    )


def _jwt_service_problem(url: str, openid: OpenIdToken) -> Outcome | None:
    origin = callfocus.call_origin()
    preflight = callfocus.preflight_problem(url, timeout=TIMEOUT_SECONDS)
    if preflight is not None:
        words, answer = preflight
        hint = _SERVICE_URL_HINT
        if answer is not None and answer.status != 404:
            hint = (
                "lk-jwt-service answers CORS for any origin itself: a proxy in front of it "
                f"must pass OPTIONS through with its Access-Control-* headers (or add them for "
                f"{origin}, with content-type allowed)."
            )
        return failed(f"the LiveKit JWT service at {url} {words}", hint)
    try:
        grant = jwt_service_grant(
            url,
            room_id=f"{DOCTOR_CALL_ROOM}:{settings.MAIN_HS_SERVER_NAME}",
            openid_token=openid,
            device_id=DOCTOR_DEVICE_ID,
            origin=origin,
            timeout=TIMEOUT_SECONDS,
        )
    except MatrixError as error:
        if error.status is None:
            return failed(f"the LiveKit JWT service at {url} does not answer", _SERVICE_URL_HINT)
        return failed(
            f"the LiveKit JWT service at {url} refused the guest homeserver's OpenID token "
            f"({_said(error)})",
            "The service checks the token with the guest homeserver over federation: it must "
            f"reach {settings.GUEST_HS_SERVER_NAME} (HTTPS to its federation port, with a "
            "certificate it trusts), and LIVEKIT_URL, LIVEKIT_KEY and LIVEKIT_SECRET must be "
            "set. Its log says which.",
        )
    if not grant.cors.allows_origin(origin):
        return failed(
            f"the LiveKit JWT service at {url} answered without CORS for {origin} "
            f"(Access-Control-Allow-Origin {grant.cors.allow_origin!r}): browsers drop it",
            "A proxy in front of it must keep its Access-Control-Allow-Origin header.",
        )
    return None


def check_delayed_events() -> Outcome:
    """Delayed events (MSC4140) on the guest homeserver: Element Call schedules the guest's
    leave with them, so a closed tab leaves the call within seconds (CALL-LAB §7)."""
    result = health.check_homeserver_feature(
        settings.GUEST_HS_URL, callfocus.DELAYED_EVENTS_FEATURE
    )
    if result is None:
        return not_checked("the guest homeserver did not answer /versions")
    if result:
        return passed("the guest homeserver has delayed events: a closed tab leaves the call")
    return warned(
        "the guest homeserver has no delayed events (org.matrix.msc4140): guests who close "
        "the tab stay in the call for 4 hours",
        "Set max_event_delay_duration: 24h in the guest homeserver's homeserver.yaml and "
        "restart it.",
    )


# -- Running them --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    label: str
    run: Callable[[], Outcome]
    needs: tuple[str, ...] = ()  # labels that must pass first, else "not checked"


CHECKS: tuple[Check, ...] = (
    Check("settings", check_settings),
    Check("database", check_database),
    Check("migrations", check_migrations, ("database",)),
    Check("broker", check_broker),
    Check("guest homeserver", check_guest_homeserver),
    Check("main homeserver", check_main_homeserver),
    Check("guest appservice", check_guest_appservice, ("guest homeserver",)),
    Check("guest namespace", check_guest_namespace, ("guest appservice",)),
    Check("guest sign-up", check_guest_namespace_exclusive, ("guest homeserver",)),
    Check("guest admin API", check_guest_admin, ("guest homeserver",)),
    Check("main bot", check_main_bot, ("main homeserver",)),
    Check("main → GuestGate", check_main_pushes, ("main bot",)),
    Check("pushes applied", check_pushes_applied, ("migrations",)),
    Check(
        "federation guest → main",
        check_federation_guest_to_main,
        ("guest appservice", "main homeserver"),
    ),
    Check(
        "federation main → guest",
        check_federation_main_to_guest,
        ("main bot", "guest homeserver"),
    ),
    Check("call rooms", check_call_rooms, ("migrations",)),
    Check("call focus", check_call_focus, ("guest appservice",)),
    Check("delayed events", check_delayed_events, ("guest homeserver",)),
)


def run_all(checks: Iterable[Check] | None = None) -> list[tuple[str, Outcome]]:
    """Run ``checks`` (default `CHECKS`) in order; one whose prerequisite did not pass is
    reported, not run."""
    checks = CHECKS if checks is None else checks
    results: list[tuple[str, Outcome]] = []
    passed_labels: set[str] = set()
    for check in checks:
        missing = [label for label in check.needs if label not in passed_labels]
        if missing:
            outcome = not_checked(f"not checked: {', '.join(missing)} did not pass")
        else:
            try:
                outcome = check.run()
            except Exception as exc:  # a doctor reports; it does not crash half-way
                outcome = failed(
                    f"the check itself failed: {_first_line(exc)}",
                    "An answer the doctor did not expect: the message says what failed.",
                )
        if outcome.ok:
            passed_labels.add(check.label)
        results.append((check.label, outcome))
    return results


def _client(base_url: str, token: str | None, *, timeout: float = TIMEOUT_SECONDS) -> MatrixClient:
    """A client that asks once: the doctor reports what it finds, it does not insist."""
    return MatrixClient(base_url=base_url, access_token=token, timeout=timeout, retries=0)


def _said(error: MatrixError) -> str:
    """What the homeserver said, with its status and errcode, without our error code."""
    parts: list[Any] = [error.status, error.errcode]
    details = " ".join(str(part) for part in parts if part is not None)
    return f"{details}: {error.message}" if details else error.message


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
