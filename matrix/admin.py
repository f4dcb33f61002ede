"""Synapse's admin API: optional for GuestGate, never required.

Guests are provisioned through the appservice API. The demo and the tests use shared-secret
registration to make moderators; reconciliation lists the guest homeserver's accounts, and
the recovery from an outage of main resets the guest homeserver's backoff, when an admin
token is configured.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from .errors import BadRequest, NotFound
from .http import build_http_client, required_str, send
from .ids import escape
from .types import Session

_REGISTER_PATH = "/_synapse/admin/v1/register"


def registration_mac(
    *,
    shared_secret: str,
    nonce: str,
    username: str,
    password: str,
    admin: bool,
    user_type: str | None = None,
) -> str:
    """The HMAC-SHA1 that proves knowledge of Synapse's ``registration_shared_secret``."""
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    mac.update(b"\x00".join(part.encode() for part in parts))
    return mac.hexdigest()


def register_with_shared_secret(
    base_url: str,
    *,
    shared_secret: str,
    username: str,
    password: str,
    admin: bool = False,
    displayname: str | None = None,
    user_type: str | None = None,
    timeout: float = 10,
    transport: httpx.BaseTransport | None = None,
) -> Session:
    """Register a user on a Synapse that has ``registration_shared_secret`` set.

    Docs: https://element-hq.github.io/synapse/latest/admin_api/register_api.html

    Returns:
        A logged-in session of the new user.
    """
    with build_http_client(base_url, timeout=timeout, transport=transport) as http:
        nonce = required_str(send(http, "GET", _REGISTER_PATH), "nonce", _REGISTER_PATH)
        request: dict[str, object] = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": registration_mac(
                shared_secret=shared_secret,
                nonce=nonce,
                username=username,
                password=password,
                admin=admin,
                user_type=user_type,
            ),
        }
        if displayname is not None:
            request["displayname"] = displayname
        if user_type is not None:
            request["user_type"] = user_type
        body = send(http, "POST", _REGISTER_PATH, json_body=request)
    return Session(
        homeserver_url=base_url.rstrip("/"),
        user_id=required_str(body, "user_id", _REGISTER_PATH),
        device_id=required_str(body, "device_id", _REGISTER_PATH),
        access_token=required_str(body, "access_token", _REGISTER_PATH),
    )


@dataclass(frozen=True, slots=True)
class ListedUser:
    user_id: str
    created_ms: int
    deactivated: bool


def list_users(
    base_url: str,
    *,
    access_token: str,
    name_contains: str,
    page_size: int = 500,
    timeout: float = 30,
    transport: httpx.BaseTransport | None = None,
) -> Generator[ListedUser, None, None]:
    """Every account whose id contains ``name_contains``, page by page (constant memory).

    Docs: https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
    """
    path = "/_synapse/admin/v2/users"
    params: dict[str, str] = {
        "name": name_contains,
        "guests": "false",
        "limit": str(page_size),
        "from": "0",
    }
    with build_http_client(base_url, timeout=timeout, transport=transport) as http:
        while True:
            body = send(http, "GET", path, access_token=access_token, params=params)
            users = body.get("users")
            for user in users if isinstance(users, list) else []:
                if isinstance(user, dict) and isinstance(user.get("name"), str):
                    yield ListedUser(
                        user_id=user["name"],
                        created_ms=int(user.get("creation_ts") or 0),
                        deactivated=bool(user.get("deactivated")),
                    )
            next_token = body.get("next_token")
            if next_token is None:
                return
            params["from"] = str(next_token)


def reset_federation_connection(
    base_url: str,
    *,
    access_token: str,
    destination: str,
    timeout: float = 10,
    transport: httpx.BaseTransport | None = None,
) -> bool:
    """Have Synapse try ``destination`` again at once, instead of waiting out its backoff.

    After failing to reach a server, Synapse refuses every request to it until its retry
    interval has passed (``NotRetryingDestination``); this forgets that interval.

    Docs: https://element-hq.github.io/synapse/latest/usage/administration/admin_api/federation.html#reset-connection-timeout

    Returns:
        True if the connection was reset; False if Synapse had no backoff to forget (it knows
        ``destination`` and is not backing off from it, or has never talked to it).
    """
    path = f"/_synapse/admin/v1/federation/destinations/{escape(destination)}/reset_connection"
    with build_http_client(base_url, timeout=timeout, transport=transport) as http:
        try:
            send(http, "POST", path, access_token=access_token, json_body={})
        except (BadRequest, NotFound):
            # 400 "The retry timing does not need to be reset for a destination", 404 "Unknown
            # destination": nothing is in the way of a request to it.
            return False
    return True
