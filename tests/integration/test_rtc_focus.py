"""The local pair's call focus (devtools.rtcfocus) checks a guest's OpenID token for real,
against the guest homeserver over federation, as lk-jwt-service does (CALL-LAB §4, §5)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from devtools.localpair import LocalPair
from matrix import MatrixClient

pytestmark = pytest.mark.homeservers


def ask_focus(pair: LocalPair, access_token: str, server_name: str) -> httpx.Response:
    return httpx.post(
        f"{pair.rtc_focus_url}/sfu/get",
        json={
            "room": "!call:example",
            "device_id": "GUESTDEVICE",
            "openid_token": {
                "access_token": access_token,
                "matrix_server_name": server_name,
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        },
        headers={"Origin": pair.appservice_url},
        trust_env=False,
    )


def test_the_focus_gives_a_guest_with_a_real_openid_token_a_livekit_token(
    homeserver_pair: LocalPair, guest_appservice: MatrixClient, guest_user_id: str
) -> None:
    token = guest_appservice.as_user(guest_user_id).openid_token(guest_user_id)

    answer = ask_focus(homeserver_pair, token.access_token, token.matrix_server_name)

    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == homeserver_pair.appservice_url
    assert answer.json()["url"] == homeserver_pair.livekit_url
    payload = json.loads(base64.b64decode(answer.json()["jwt"].split(".")[1]))
    assert payload["sub"] == f"{guest_user_id}:GUESTDEVICE"
    assert payload["video"]["room"] == "!call:example"


def test_the_focus_refuses_a_forged_openid_token(homeserver_pair: LocalPair) -> None:
    answer = ask_focus(homeserver_pair, "forged-token", homeserver_pair.guest.server_name)

    assert answer.status_code == 401
    assert answer.json()["errcode"] == "M_UNAUTHORIZED"


def test_the_focus_trusts_no_other_homeserver(
    homeserver_pair: LocalPair, guest_appservice: MatrixClient, guest_user_id: str
) -> None:
    token = guest_appservice.as_user(guest_user_id).openid_token(guest_user_id)

    answer = ask_focus(homeserver_pair, token.access_token, homeserver_pair.main.server_name)

    assert answer.status_code == 401


def test_the_focus_answers_the_browsers_preflight_for_guestgate_only(
    homeserver_pair: LocalPair,
) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{homeserver_pair.rtc_focus_url}/sfu/get",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            trust_env=False,
        )

    ours = preflight(homeserver_pair.appservice_url)
    theirs = preflight("https://elsewhere.example")

    assert ours.status_code == 204
    assert ours.headers["Access-Control-Allow-Origin"] == homeserver_pair.appservice_url
    assert "content-type" in ours.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in theirs.headers


def test_the_focus_does_not_offer_delegated_delayed_leaves(homeserver_pair: LocalPair) -> None:
    answer = httpx.post(
        f"{homeserver_pair.rtc_focus_url}/sfu/delegate_delayed_leave", json={}, trust_env=False
    )

    assert answer.status_code == 404
