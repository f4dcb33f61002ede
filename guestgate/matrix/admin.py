"""Synapse's admin API, for the local development and test homeservers only.

GuestGate itself never needs it: guests are provisioned through the appservice API. The demo
and the tests use shared-secret registration to make moderators on the main homeserver.
"""

from __future__ import annotations

import hashlib
import hmac

import httpx

from .http import build_http_client, required_str, send
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
