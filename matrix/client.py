"""A small, synchronous Matrix client-server API client: the calls GuestGate makes, and no more.

One `MatrixClient` talks to one homeserver with one access token. An appservice client acts
as one of its users with `as_user()` (identity assertion: ``?user_id=`` on every request).
Retryable failures (`RateLimited`, `HomeserverUnavailable`) are retried a few times here;
longer waits are left to the caller (a Celery task retries later).

Spec: https://spec.matrix.org/v1.16/client-server-api/
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar

import httpx

from .appservice import RoomEvent, room_event
from .errors import (
    Forbidden,
    HomeserverUnavailable,
    MatrixError,
    NotFound,
    RateLimited,
    UserInUse,
)
from .http import (
    CLIENT_ROOT,
    CLIENT_V1_PREFIX,
    Params,
    build_http_client,
    client_path,
    optional_str,
    required_str,
    send,
    send_for_list,
)
from .types import (
    Member,
    OpenIdToken,
    PowerLevels,
    Profile,
    RoomInfo,
    Session,
    Versions,
    Whoami,
    creators_have_infinite_power,
)

logger = logging.getLogger("matrix")
_T = TypeVar("_T")

#: First wait of the exponential backoff, in seconds (then doubled per attempt, with jitter).
BACKOFF_BASE = 0.5

#: Waits before retrying a join that lost the invite/join race (MATRIX-LAB P8): the race
#: usually clears quickly, so start short and back off.
JOIN_RACE_DELAYS = (0.02, 0.04, 0.08, 0.15, 0.3, 0.6)

# Synapse's 403 messages when a join arrives before the guest's server has digested the invite.
_JOIN_RACE_MARKERS = ("duplicate auth_events", "not invited")


class MatrixClient:
    """Calls to one homeserver, as one user (or as an appservice, optionally masquerading).

    Args:
        base_url: The homeserver's client-server API base URL (from settings, never from input).
        access_token: The token sent in the ``Authorization`` header, or None for login calls.
        user_id: For an appservice token: the user to act as (identity assertion).
        timeout: Seconds for each request (connect, read, write, pool).
        retries: Extra attempts after a retryable failure.
        transport: An httpx transport (tests use ``httpx.MockTransport``).
        sleep: How to wait between attempts (tests inject a recorder).
        max_retry_wait: The longest wait honoured here; a homeserver asking for more gets its
            `RateLimited` raised at once, for the caller to retry later.
    """

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str | None,
        user_id: str | None = None,
        timeout: float = 10,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_wait: float = 5.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._access_token = access_token
        self._user_id = user_id
        self._retries = max(0, retries)
        self._sleep = sleep
        self._max_retry_wait = max_retry_wait
        self._http = build_http_client(self._base_url, timeout=timeout, transport=transport)
        self._owns_http = True

    def __repr__(self) -> str:
        acting_as = f", user_id={self._user_id!r}" if self._user_id else ""
        return f"MatrixClient(base_url={self._base_url!r}{acting_as})"

    @property
    def base_url(self) -> str:
        """The homeserver's base URL."""
        return self._base_url

    @property
    def user_id(self) -> str | None:
        """The user this appservice client acts as, if it masquerades."""
        return self._user_id

    def as_user(self, user_id: str) -> MatrixClient:
        """This appservice client acting as `user_id`, sharing its connection pool.

        Spec: https://spec.matrix.org/v1.16/application-service-api/#identity-assertion
        """
        other = copy.copy(self)
        other._user_id = user_id
        other._owns_http = False
        return other

    def with_token(self, access_token: str) -> MatrixClient:
        """A client using another token (e.g. a guest's session), sharing the connection pool."""
        other = copy.copy(self)
        other._access_token = access_token
        other._user_id = None
        other._owns_http = False
        return other

    def close(self) -> None:
        """Close the connection pool (clients made by `as_user` leave it to their parent)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- The server ----------------------------------------------------------------------------

    def versions(self) -> Versions:
        """The spec versions the homeserver supports; needs no token, so it checks reachability.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientversions
        """
        body = self._request("GET", client_path("versions", prefix=CLIENT_ROOT))
        versions = body.get("versions")
        features = body.get("unstable_features")
        return Versions(
            versions=tuple(v for v in versions if isinstance(v, str))
            if isinstance(versions, list)
            else (),
            unstable_features=MappingProxyType(
                {k: v for k, v in features.items() if isinstance(v, bool)}
                if isinstance(features, dict)
                else {}
            ),
        )

    def appservice_ping(
        self, appservice_id: str, *, transaction_id: str | None = None
    ) -> int | None:
        """Ask the homeserver to ping this appservice's URL with its ``hs_token`` (Matrix 1.7).

        The homeserver reports how the appservice answered through `errcode`: ``M_URL_NOT_SET``
        (400), ``M_BAD_STATUS`` or ``M_CONNECTION_FAILED`` (502), ``M_CONNECTION_TIMEOUT``
        (504); a 403 when `appservice_id` is not this token's registration. Send it with
        ``retries=0``: the errors are retryable, but a failed ping is an answer to report.

        Spec: https://spec.matrix.org/v1.16/application-service-api/#post_matrixclientv1appserviceappserviceidping

        Returns:
            How long the appservice took to answer, in milliseconds, if the homeserver said.
        """
        path = client_path("appservice", appservice_id, "ping", prefix=CLIENT_V1_PREFIX)
        request = {"transaction_id": transaction_id} if transaction_id is not None else {}
        duration = self._request("POST", path, body=request).get("duration_ms")
        return duration if isinstance(duration, int) and not isinstance(duration, bool) else None

    # -- Accounts ------------------------------------------------------------------------------

    def whoami(self) -> Whoami:
        """Who the token (or the masquerading appservice) acts as.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3accountwhoami
        """
        path = client_path("account", "whoami")
        body = self._request("GET", path)
        return Whoami(
            user_id=required_str(body, "user_id", path), device_id=optional_str(body, "device_id")
        )

    def register_appservice_user(self, localpart: str) -> str:
        """Register a user in the appservice's exclusive namespace, without logging it in.

        Raises `UserInUse` if it exists, `ExclusiveNamespace` if the localpart is outside the
        namespace, `InvalidUsername` if the homeserver refuses the localpart.

        Spec: https://spec.matrix.org/v1.16/application-service-api/#server-admin-style-permissions
        and https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3register

        Returns:
            The new user's id.
        """
        path = client_path("register")
        body = self._request(
            "POST",
            path,
            body={
                "type": "m.login.application_service",
                "username": localpart,
                "inhibit_login": True,
            },
        )
        return required_str(body, "user_id", path)

    def username_available(self, localpart: str) -> bool:
        """Whether anyone may register `localpart` here (checked, not reserved).

        Raises `ExclusiveNamespace` if an appservice reserved the name, `InvalidUsername` if
        the homeserver refuses it, `Forbidden` if registration is closed.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3registeravailable

        Returns:
            True if the name is free, False if a user has it.
        """
        try:
            body = self._request(
                "GET", client_path("register", "available"), params={"username": localpart}
            )
        except UserInUse:
            return False
        return body.get("available") is True

    def login_appservice_user(
        self,
        user_id: str,
        *,
        device_id: str | None = None,
        initial_device_display_name: str | None = None,
    ) -> Session:
        """Log in a user of the appservice's namespace: a real token, with a device.

        Spec: https://spec.matrix.org/v1.16/application-service-api/#appservice-login
        """
        request: dict[str, Any] = {
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": user_id},
        }
        if device_id is not None:
            request["device_id"] = device_id
        if initial_device_display_name is not None:
            request["initial_device_display_name"] = initial_device_display_name
        return self._login(request)

    def password_login(
        self, user: str, password: str, *, initial_device_display_name: str | None = None
    ) -> Session:
        """Log in with a password (moderators of the main homeserver).

        Args:
            user: A full user id or a localpart of this homeserver.
            password: The user's password; sent in the body only, never logged.
            initial_device_display_name: Shown in the user's list of sessions.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3login
        """
        request: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        if initial_device_display_name is not None:
            request["initial_device_display_name"] = initial_device_display_name
        return self._login(request)

    def logout(self) -> None:
        """Invalidate this client's access token (and delete its device).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3logout
        """
        self._request("POST", client_path("logout"), body={})

    def deactivate(self, *, erase: bool) -> None:
        """Deactivate the account (for an appservice: the masqueraded user; no UIA needed).

        Args:
            erase: Also ask the homeserver to forget the user's messages and profile.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3accountdeactivate
        """
        self._request("POST", client_path("account", "deactivate"), body={"erase": erase})

    def set_displayname(self, user_id: str, displayname: str) -> None:
        """Set a user's display name.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#put_matrixclientv3profileuseriddisplayname
        """
        self._request(
            "PUT",
            client_path("profile", user_id, "displayname"),
            body={"displayname": displayname},
        )

    def get_displayname(self, user_id: str) -> str | None:
        """A user's display name, or None if it has none (or the user is unknown).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuseriddisplayname
        """
        try:
            body = self._request("GET", client_path("profile", user_id, "displayname"))
        except NotFound:
            return None
        return optional_str(body, "displayname")

    def profile(self, user_id: str) -> Profile:
        """A user's profile, asked of the user's own homeserver (over federation if remote).

        Raises `NotFound` (``M_NOT_FOUND``) if the user or the profile is unknown there, and
        `HomeserverUnavailable` (502/504) if this homeserver could not reach that one.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3profileuserid
        """
        body = self._request("GET", client_path("profile", user_id))
        return Profile(
            user_id=user_id,
            displayname=optional_str(body, "displayname"),
            avatar_url=optional_str(body, "avatar_url"),
        )

    # -- Membership ----------------------------------------------------------------------------

    def knock(self, room_id: str, *, via: Sequence[str], reason: str | None = None) -> str:
        """Ask to join a room whose join rule is ``knock``.

        `via` is required in practice: room ids of room version 12 have no server part.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3knockroomidoralias

        Returns:
            The room id.
        """
        path = client_path("knock", room_id)
        body = self._request("POST", path, params=_via(via), body=_reason(reason))
        return _room_id_answer(body, room_id, path)

    def join(self, room_id: str, *, via: Sequence[str], reason: str | None = None) -> str:
        """Join a room, retrying the invite/join race a few times (MATRIX-LAB P8).

        A join sent as soon as the invite shows up can fail with 403 "duplicate auth_events"
        or "not invited" while the user's homeserver is still processing the invite; a few
        short waits are enough (MATRIX-LAB P8 has the figures).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3joinroomidoralias

        Returns:
            The room id.
        """
        path = client_path("join", room_id)
        for delay in (*JOIN_RACE_DELAYS, None):
            try:
                body = self._request("POST", path, params=_via(via), body=_reason(reason))
            except Forbidden as error:
                if delay is None or not _is_join_race(error):
                    raise
                logger.info("join of %s lost the invite race; retrying in %.2fs", room_id, delay)
                self._sleep(delay)
            else:
                return _room_id_answer(body, room_id, path)
        raise AssertionError("unreachable")  # pragma: no cover

    def leave(self, room_id: str, reason: str | None = None) -> None:
        """Leave a room, withdraw a knock or reject an invite.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3roomsroomidleave
        """
        self._request("POST", client_path("rooms", room_id, "leave"), body=_reason(reason))

    def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Invite a user (for a knocking user: approve the knock).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3roomsroomidinvite
        """
        self._membership_action(room_id, "invite", user_id, reason)

    def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Kick a user (for a knocking user: deny the knock).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3roomsroomidkick
        """
        self._membership_action(room_id, "kick", user_id, reason)

    def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Ban a user from the room.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3roomsroomidban
        """
        self._membership_action(room_id, "ban", user_id, reason)

    def unban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Lift a ban.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3roomsroomidunban
        """
        self._membership_action(room_id, "unban", user_id, reason)

    def ensure_invited(self, room_id: str, user_id: str, reason: str | None = None) -> bool:
        """Make sure the user is invited to (or already in) the room.

        Returns:
            True if the homeserver accepted the invite, False if it refused because the user
            was already invited or joined. Any other refusal is raised.
        """
        try:
            self.invite(room_id, user_id, reason)
        except Forbidden:
            member = self.member(room_id, user_id)
            if member is not None and member.membership in ("invite", "join"):
                return False
            raise
        return True

    def ensure_joined(self, room_id: str, via: Sequence[str], *, reason: str | None = None) -> bool:
        """Make sure this client's user is joined to the room.

        Returns:
            True if the homeserver accepted the join, False if it refused but the user was
            already joined.
        """
        try:
            self.join(room_id, via=via, reason=reason)
        except Forbidden:
            me = self._user_id or self.whoami().user_id
            member = self.member(room_id, me)
            if member is not None and member.membership == "join":
                return False
            raise
        return True

    def ensure_kicked(self, room_id: str, user_id: str, reason: str | None = None) -> bool:
        """Make sure the user is neither in the room nor knocking nor invited.

        Beware (MATRIX-LAB P5): a knock sent through a server already in the room reaches the
        room a moment after the knock call returned; a kick before that finds nobody and
        counts as done here. The knock's membership event, arriving later, must be handled.

        Returns:
            True if the homeserver accepted the kick, False if the user had already left, was
            never there, or is banned.
        """
        try:
            self.kick(room_id, user_id, reason)
        except Forbidden:
            member = self.member(room_id, user_id)
            if member is None or member.membership in ("leave", "ban"):
                return False
            raise
        return True

    def ensure_banned(self, room_id: str, user_id: str, reason: str | None = None) -> bool:
        """Make sure the user is banned from the room.

        Returns:
            True if the homeserver accepted the ban, False if the user was already banned.
        """
        try:
            self.ban(room_id, user_id, reason)
        except Forbidden:
            member = self.member(room_id, user_id)
            if member is not None and member.membership == "ban":
                return False
            raise
        return True

    def ensure_unbanned(self, room_id: str, user_id: str, reason: str | None = None) -> bool:
        """Make sure the user is not banned from the room (lifting a ban leaves them out:
        membership ``leave``; they may knock again).

        Returns:
            True if the homeserver lifted the ban, False if the user was not banned.
        """
        try:
            self.unban(room_id, user_id, reason)
        except Forbidden:
            member = self.member(room_id, user_id)
            if member is None or member.membership != "ban":
                return False
            raise
        return True

    def member(self, room_id: str, user_id: str) -> Member | None:
        """The user's membership of the room, or None if the room has none for that user.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstateeventtypestatekey
        """
        found = self._state(room_id, "m.room.member", user_id)
        if found is None:
            return None
        content, sender = found
        member = _member(user_id, content, sender)
        if member is None:
            raise HomeserverUnavailable(
                f"the membership of {user_id} has no 'membership'",
                endpoint=f"GET {client_path('rooms', room_id, 'state', 'm.room.member', user_id)}",
            )
        return member

    def members(self, room_id: str, *, membership: str | None = None) -> list[Member]:
        """The room's members, optionally only those with one membership (e.g. ``"knock"``).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmembers
        """
        path = client_path("rooms", room_id, "members")
        params = {"membership": membership} if membership else None
        body = self._request("GET", path, params=params)
        chunk = body.get("chunk")
        if not isinstance(chunk, list):
            raise HomeserverUnavailable(
                "the homeserver's member list has no 'chunk'", endpoint=f"GET {path}"
            )
        members = []
        for event in chunk:
            member = _member_from_event(event)
            if member is None:
                logger.warning("skipping a malformed member event in %s", room_id)
                continue
            members.append(member)
        return members

    def member_events(self, room_id: str) -> list[RoomEvent]:
        """The room's current ``m.room.member`` state events, whole (ids and timestamps), to
        compare with what the homeserver pushed.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmembers
        """
        path = client_path("rooms", room_id, "members")
        chunk = self._request("GET", path).get("chunk")
        if not isinstance(chunk, list):
            raise HomeserverUnavailable(
                "the homeserver's member list has no 'chunk'", endpoint=f"GET {path}"
            )
        events = [
            room_event({"room_id": room_id, **raw})
            for raw in chunk
            if isinstance(raw, dict) and isinstance(raw.get("event_id"), str)
        ]
        return [event for event in events if event is not None and event.membership]

    # -- Room state ----------------------------------------------------------------------------

    def state_events(self, room_id: str, event_type: str) -> list[RoomEvent]:
        """The room's current state events of one type, whole (ids, senders and timestamps),
        e.g. every device's ``org.matrix.msc3401.call.member``.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstate
        """
        path = client_path("rooms", room_id, "state")
        body = self._request_list("GET", path)
        events = [
            room_event({"room_id": room_id, **raw})
            for raw in body
            if isinstance(raw, dict)
            and raw.get("type") == event_type
            and isinstance(raw.get("event_id"), str)
        ]
        return [event for event in events if event is not None and event.state_key is not None]

    def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """The content of one state event, or None if the room has no such state.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstateeventtypestatekey
        """
        path = client_path("rooms", room_id, "state", event_type, state_key)
        try:
            return self._request("GET", path)
        except NotFound:
            return None

    def set_state(
        self, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> str:
        """Send a state event.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#put_matrixclientv3roomsroomidstateeventtypestatekey

        Returns:
            The event id.
        """
        path = client_path("rooms", room_id, "state", event_type, state_key)
        body = self._request("PUT", path, body=dict(content))
        return required_str(body, "event_id", path)

    def power_levels(self, room_id: str) -> PowerLevels:
        """The room's power levels, with the spec's defaults and the creators' rights applied.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#mroompower_levels
        """
        content = self.state_event(room_id, "m.room.power_levels")
        create = self._create_event(room_id)
        creators: tuple[str, ...] = ()
        if creators_have_infinite_power(create.room_version):
            creators = create.creators
        return PowerLevels.from_content(content, creator=create.creator, creators=creators)

    def room_info(self, room_id: str) -> RoomInfo:
        """The room's name, join rule, room version and creator.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#mroomcreate
        """
        name = self.state_event(room_id, "m.room.name")
        join_rules = self.state_event(room_id, "m.room.join_rules")
        create = self._create_event(room_id)
        return RoomInfo(
            room_id=room_id,
            name=optional_str(name, "name") if name else None,
            join_rule=optional_str(join_rules, "join_rule") if join_rules else None,
            room_version=create.room_version,
            creator=create.creator,
        )

    def resolve_alias(self, alias: str) -> tuple[str, list[str]]:
        """The room id behind an alias, and servers that know the room.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3directoryroomroomalias
        """
        path = client_path("directory", "room", alias)
        body = self._request("GET", path)
        servers = body.get("servers")
        return (
            required_str(body, "room_id", path),
            [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else [],
        )

    def create_room(
        self,
        *,
        name: str,
        join_rule: str = "knock",
        invite: Iterable[str] = (),
        power_level_users: Mapping[str, int] | None = None,
        power_level_events: Mapping[str, int] | None = None,
        preset: str = "private_chat",
        room_version: str | None = None,
        topic: str | None = None,
        power_level_content_override: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a room (GuestGate's call rooms made in one step; the demo; the tests).

        `power_level_users` and `power_level_events` (the level each event type needs) are
        merged into the room's power levels after creation, so the creator keeps its own level
        whatever the room version's rules for creators are. `power_level_content_override`
        replaces whole top-level keys of the first power levels (e.g. ``{"invite": 50}``; the
        spec's semantics: a key given here replaces the preset's, so ``events`` belongs in
        `power_level_events`).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3createroom

        Returns:
            The room id.
        """
        request: dict[str, Any] = {
            "preset": preset,
            "name": name,
            "invite": list(invite),
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}}
            ],
        }
        if room_version is not None:
            request["room_version"] = room_version
        if topic:
            request["topic"] = topic
        if power_level_content_override:
            request["power_level_content_override"] = dict(power_level_content_override)
        path = client_path("createRoom")
        room_id = required_str(self._request("POST", path, body=request), "room_id", path)
        if power_level_users or power_level_events:
            content = self.state_event(room_id, "m.room.power_levels") or {}
            for key, extra in (("users", power_level_users), ("events", power_level_events)):
                if extra:
                    known = content.get(key)
                    content[key] = {**(known if isinstance(known, dict) else {}), **extra}
            self.set_state(room_id, "m.room.power_levels", content)
        return room_id

    # -- OpenID (the call's focus checks who a user is with it) ---------------------------------

    def openid_token(self, user_id: str) -> OpenIdToken:
        """An OpenID token that lets a third party (a LiveKit JWT service) verify `user_id`.

        The third party asks the user's homeserver who the token belongs to, over federation
        (``GET /_matrix/federation/v1/openid/userinfo``). An appservice asks for one of its
        users by acting as it (`as_user`).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3useruseridopenidrequest_token
        """
        path = client_path("user", user_id, "openid", "request_token")
        body = self._request("POST", path, body={})
        expires_in = body.get("expires_in")
        return OpenIdToken(
            access_token=required_str(body, "access_token", path),
            token_type=optional_str(body, "token_type") or "Bearer",
            matrix_server_name=required_str(body, "matrix_server_name", path),
            expires_in=expires_in
            if isinstance(expires_in, int) and not isinstance(expires_in, bool)
            else 0,
        )

    # -- Messages (GuestGate's notices to moderators, and their reactions) ----------------------

    def send_event(
        self, room_id: str, event_type: str, content: Mapping[str, Any], *, txn_id: str
    ) -> str:
        """Send a room event (not state).

        `txn_id` makes the send idempotent: the homeserver answers a repeat of the same id
        from the same sender with the first event's id, so derive it from GuestGate's rows.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid

        Returns:
            The event id.
        """
        path = client_path("rooms", room_id, "send", event_type, txn_id)
        body = self._request("PUT", path, body=dict(content))
        return required_str(body, "event_id", path)

    def send_notice(
        self,
        room_id: str,
        body: str,
        *,
        txn_id: str,
        html: str | None = None,
        reply_to: str | None = None,
        mentions: Sequence[str] = (),
    ) -> str:
        """Send an ``m.notice`` (a bot's message: clients do not answer it automatically).

        It carries ``m.mentions`` (only `mentions`), so no ``@room`` in a quoted name notifies
        anyone.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#mnotice and
        https://spec.matrix.org/v1.16/client-server-api/#user-and-room-mentions

        Returns:
            The event id.
        """
        content = message_content(body, html=html, mentions=mentions)
        if reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return self.send_event(room_id, "m.room.message", content, txn_id=txn_id)

    def edit_message(
        self,
        room_id: str,
        event_id: str,
        body: str,
        *,
        txn_id: str,
        html: str | None = None,
        msgtype: str = "m.notice",
    ) -> str:
        """Replace the text of one of this user's messages (an ``m.replace`` edit).

        Clients show the newest edit in place of the original; the fallback body starts with
        ``* `` for clients that do not know edits.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#event-replacements

        Returns:
            The edit's event id.
        """
        new_content = message_content(body, html=html, msgtype=msgtype)
        content = message_content(
            f"* {body}", html=f"* {html}" if html is not None else None, msgtype=msgtype
        )
        content["m.new_content"] = new_content
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
        return self.send_event(room_id, "m.room.message", content, txn_id=txn_id)

    def send_reaction(self, room_id: str, event_id: str, key: str, *, txn_id: str) -> str:
        """React to an event with `key` (an emoji): an ``m.annotation``.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#event-annotations-and-reactions

        Returns:
            The reaction's event id.
        """
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return self.send_event(room_id, "m.reaction", content, txn_id=txn_id)

    def event(self, room_id: str, event_id: str) -> RoomEvent:
        """One event of a room, as this user may see it. Raises `NotFound` if it may not.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomideventeventid
        """
        path = client_path("rooms", room_id, "event", event_id)
        body = self._request("GET", path)
        event = room_event({"room_id": room_id, **body}) if "event_id" in body else None
        if event is None or not isinstance(event.event_id, str):
            raise HomeserverUnavailable(
                "the homeserver's event is malformed", endpoint=f"GET {path}"
            )
        return event

    def messages(self, room_id: str, *, limit: int = 50) -> list[RoomEvent]:
        """The room's latest events as this user sees them, newest first (one page).

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmessages
        """
        path = client_path("rooms", room_id, "messages")
        body = self._request("GET", path, params={"dir": "b", "limit": str(limit)})
        return _events(body, room_id, path)

    def relations(
        self, room_id: str, event_id: str, *, rel_type: str, event_type: str | None = None
    ) -> list[RoomEvent]:
        """The events that relate to an event by `rel_type` (e.g. its ``m.replace`` edits or
        ``m.annotation`` reactions), oldest first, every page.

        Spec: https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidrelationseventidreltypeeventtype
        """
        segments = ["rooms", room_id, "relations", event_id, rel_type]
        if event_type is not None:
            segments.append(event_type)
        path = client_path(*segments, prefix=CLIENT_V1_PREFIX)
        params: dict[str, str] = {"dir": "f", "limit": "100"}
        found: list[RoomEvent] = []
        while True:
            body = self._request("GET", path, params=params)
            page = _events(body, room_id, path)
            found += page
            next_batch = body.get("next_batch")
            if not isinstance(next_batch, str) or not page:
                return found
            params = {**params, "from": next_batch}

    # -- Plumbing ------------------------------------------------------------------------------

    def _login(self, request: dict[str, Any]) -> Session:
        path = client_path("login")
        body = self._request("POST", path, body=request)
        return Session(
            homeserver_url=self._base_url,
            user_id=required_str(body, "user_id", path),
            device_id=required_str(body, "device_id", path),
            access_token=required_str(body, "access_token", path),
        )

    def _membership_action(
        self, room_id: str, action: str, user_id: str, reason: str | None
    ) -> None:
        self._request(
            "POST",
            client_path("rooms", room_id, action),
            body={"user_id": user_id, **_reason(reason)},
        )

    def _state(
        self, room_id: str, event_type: str, state_key: str
    ) -> tuple[dict[str, Any], str | None] | None:
        """A state event's content and sender (None if the homeserver gives only content)."""
        path = client_path("rooms", room_id, "state", event_type, state_key)
        try:
            body = self._request("GET", path, params={"format": "event"})
        except NotFound:
            return None
        content = body.get("content")
        if isinstance(content, dict) and "type" in body:
            return content, optional_str(body, "sender")
        # A homeserver that predates ?format=event answers with the content alone.
        return body, None

    def _create_event(self, room_id: str) -> _Create:
        found = self._state(room_id, "m.room.create", "")
        if found is None:
            return _Create(room_version=None, creator=None, creators=())
        content, sender = found
        # Room versions 1-10 name the creator in the content; 11 and later only as sender.
        creator = sender or optional_str(content, "creator")
        room_version = content.get("room_version", "1")
        additional = content.get("additional_creators")
        creators: tuple[str, ...] = (creator,) if creator else ()
        if isinstance(additional, list):
            creators += tuple(user for user in additional if isinstance(user, str))
        return _Create(
            room_version=room_version if isinstance(room_version, str) else None,
            creator=creator,
            creators=creators,
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a request, retrying retryable failures; every error carries no token."""
        return self._retrying(
            method,
            path,
            lambda query: send(
                self._http,
                method,
                path,
                access_token=self._access_token,
                params=query,
                json_body=body,
            ),
            params,
        )

    def _request_list(self, method: str, path: str) -> list[Any]:
        """`_request` for an endpoint that answers with a JSON array."""
        return self._retrying(
            method,
            path,
            lambda query: send_for_list(
                self._http, method, path, access_token=self._access_token, params=query
            ),
            None,
        )

    def _retrying(
        self,
        method: str,
        path: str,
        attempt_once: Callable[[dict[str, str | Sequence[str]]], _T],
        params: Params | None,
    ) -> _T:
        query: dict[str, str | Sequence[str]] = dict(params or {})
        if self._user_id is not None:
            query["user_id"] = self._user_id
        attempt = 0
        while True:
            try:
                return attempt_once(query)
            except MatrixError as error:
                error.redact(self._access_token)
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    raise
                logger.info(
                    "%s %s failed (%s); attempt %d of %d in %.2fs",
                    method,
                    path,
                    error.code,
                    attempt + 2,
                    self._retries + 1,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _retry_delay(self, error: MatrixError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not error.retryable or attempt >= self._retries:
            return None
        if error.status is not None and 200 <= error.status < 300:
            # The homeserver did act on the request and then answered garbage: sending it
            # again could act twice. The caller decides (the error is still retryable).
            return None
        if isinstance(error, RateLimited) and error.retry_after_ms is not None:
            wait = error.retry_after_ms / 1000
            return wait if wait <= self._max_retry_wait else None
        backoff = min(self._max_retry_wait, BACKOFF_BASE * 2**attempt)
        # Jitter spreads out many clients that failed together; not a secret.
        return backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311


@dataclass(frozen=True, slots=True)
class _Create:
    """What GuestGate reads from a room's ``m.room.create`` event."""

    room_version: str | None
    creator: str | None
    creators: tuple[str, ...]


def _via(servers: Sequence[str]) -> dict[str, Sequence[str]]:
    # `server_name` is what homeservers older than spec v1.12 read; `via` replaces it.
    # A lone string is a Sequence[str] too: do not send one server per character.
    names = [servers] if isinstance(servers, str) else list(servers)
    return {"server_name": names, "via": names}


def _reason(reason: str | None) -> dict[str, str]:
    return {"reason": reason} if reason else {}


def _is_join_race(error: Forbidden) -> bool:
    message = error.message.lower()
    return any(marker in message for marker in _JOIN_RACE_MARKERS)


def _room_id_answer(body: Mapping[str, Any], requested: str, path: str) -> str:
    # The answer names the room; when we asked by room id, that id is the answer anyway.
    if isinstance(body.get("room_id"), str) or not requested.startswith("!"):
        return required_str(body, "room_id", path)
    return requested


def _member(user_id: str, content: Mapping[str, Any], sender: str | None) -> Member | None:
    membership = optional_str(content, "membership")
    if membership is None:
        return None
    return Member(
        user_id=user_id,
        membership=membership,
        displayname=optional_str(content, "displayname"),
        reason=optional_str(content, "reason"),
        sender=sender,
    )


def _member_from_event(event: object) -> Member | None:
    if not isinstance(event, dict):
        return None
    user_id = optional_str(event, "state_key")
    content = event.get("content")
    if not user_id or not isinstance(content, dict):
        return None
    return _member(user_id, content, optional_str(event, "sender"))


def message_content(
    body: str, *, html: str | None = None, msgtype: str = "m.notice", mentions: Sequence[str] = ()
) -> dict[str, Any]:
    """An ``m.room.message`` content: plain text, optionally HTML, and explicit mentions
    (an empty ``m.mentions`` turns off the older rules that notify on words in the body).

    Spec: https://spec.matrix.org/v1.16/client-server-api/#mroommessage-msgtypes
    """
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": body,
        "m.mentions": {"user_ids": list(mentions)} if mentions else {},
    }
    if html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    return content


def _events(body: Mapping[str, Any], room_id: str, path: str) -> list[RoomEvent]:
    """The events of a paginated answer's ``chunk`` (malformed ones skipped)."""
    chunk = body.get("chunk")
    if not isinstance(chunk, list):
        raise HomeserverUnavailable(
            "the homeserver's answer has no 'chunk'", endpoint=f"GET {path}"
        )
    events = [
        room_event({"room_id": room_id, **raw})
        for raw in chunk
        if isinstance(raw, dict) and isinstance(raw.get("event_id"), str)
    ]
    return [event for event in events if event is not None]
