"""Invite links: tokens, QR codes decoded back, revocation, usage limits under concurrency."""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from guestgate.crypto import token_hash
from rooms.invite_links import (
    InviteLinkUnusable,
    invite_link_create,
    invite_link_for_token,
    invite_link_redeem,
    invite_url,
)
from rooms.models import CallRoom, InviteLink
from rooms.qr_codes import qr_png, qr_svg

MODERATOR = "@mona:main.test"


@pytest.fixture
def mona(room: CallRoom) -> Client:
    client = Client()
    client.force_login(
        User.objects.create(username=MODERATOR), backend="rooms.moderators.MatrixModeratorBackend"
    )
    return client


def decode_qr(png: bytes) -> str:
    """Read the code as a phone would. (OpenCV's classic detector misses ~3 % of valid codes
    of this size; the ArUco-based one read 300 of 300.)"""
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "not a PNG"
    text, _points, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return str(text)


def test_a_token_has_at_least_128_random_bits_and_only_its_hash_is_stored(room: CallRoom) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)

    assert len(new.token) == 26 and new.token.isalnum() and new.token == new.token.lower()
    assert 26 * math.log2(32) >= 128
    stored = InviteLink.objects.filter(pk=new.link.pk).values().get()
    assert new.token not in {str(value) for value in stored.values()}
    assert stored["token_hash"] == token_hash(new.token)


def test_a_token_typed_from_a_poster_in_capitals_and_groups_still_works(room: CallRoom) -> None:
    token = invite_link_create(room=room, created_by=MODERATOR).token
    typed = "-".join(token[i : i + 5] for i in range(0, 26, 5)).upper()

    assert invite_link_for_token(typed).room == room


def test_the_png_qr_code_decodes_back_to_the_links_address(room: CallRoom) -> None:
    url = invite_url(invite_link_create(room=room, created_by=MODERATOR).token)

    assert decode_qr(qr_png(url)) == url


def test_the_svg_qr_code_is_a_scalable_drawing(room: CallRoom) -> None:
    svg = qr_svg("http://127.0.0.1:8000/j/abcdefghijklmnopqrstuvwxyz")

    assert svg.startswith("<svg") and "viewBox" in svg and "<path" in svg


def test_making_a_link_shows_its_address_and_qr_once(mona: Client, room: CallRoom) -> None:
    made = mona.post(
        f"/moderator/rooms/{room.pk}/links", {"label": "Poster at reception", "max_uses": "20"}
    )

    page = made.content.decode()
    link = InviteLink.objects.get()
    assert made.status_code == 200
    assert "Copy or print it now" in page and "<svg" in page
    listing = mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()
    assert "Poster at reception" in listing and "used 0 of 20 times" in listing
    assert link.token_hash not in listing
    token = page.split('name="token" value="')[1].split('"')[0]
    assert token_hash(token) == link.token_hash and token not in listing


def test_the_qr_download_needs_the_links_own_token(mona: Client, room: CallRoom) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)
    other = invite_link_create(room=room, created_by=MODERATOR)

    good = mona.post(f"/moderator/links/{new.link.pk}/qr.png", {"token": new.token})
    wrong = mona.post(f"/moderator/links/{new.link.pk}/qr.png", {"token": other.token})

    assert good.status_code == 200 and good["Content-Type"] == "image/png"
    assert decode_qr(good.content) == invite_url(new.token)
    assert wrong.status_code == 404


def test_the_poster_shows_the_room_the_qr_and_the_typable_code(
    mona: Client, room: CallRoom
) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)

    poster = mona.post(
        f"/moderator/links/{new.link.pk}/poster",
        {"token": new.token, "instructions": "Scan me <b>now</b>"},
    )

    html = poster.content.decode()
    assert "Join Team call" in html and "<svg" in html
    t = new.token
    assert f"{t[:5]}-{t[5:10]}-{t[10:15]}-{t[15:20]}-{t[20:]}" in html  # no lonely last letter
    assert "Scan me &lt;b&gt;now&lt;/b&gt;" in html


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_uses": "0"}, "max_uses"),
        ({"expires_in_hours": "-3"}, "expires_in_hours"),
        ({"label": "x" * 101}, "label"),
    ],
)
def test_bad_link_settings_are_form_errors(
    mona: Client, room: CallRoom, data: dict[str, str], field: str
) -> None:
    answer = mona.post(f"/moderator/rooms/{room.pk}/links", data)

    assert answer.status_code == 400
    assert 'role="alert"' in answer.content.decode()
    assert not InviteLink.objects.exists()


def test_a_revoked_link_stops_working_at_once(mona: Client, room: CallRoom) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)
    assert Client().get(f"/j/{new.token}").status_code == 200

    mona.post(f"/moderator/links/{new.link.pk}/revoke")

    answer = Client().get(f"/j/{new.token}")
    assert answer.status_code == 410 and b"withdrawn" in answer.content
    assert "revoked" in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()


def test_someone_without_the_power_to_invite_cannot_manage_links(room: CallRoom) -> None:
    outsider = Client()
    outsider.force_login(
        User.objects.create(username="@otto:main.test"),
        backend="rooms.moderators.MatrixModeratorBackend",
    )

    assert outsider.get(f"/moderator/rooms/{room.pk}/links").status_code == 404
    assert outsider.post(f"/moderator/rooms/{room.pk}/links", {}).status_code == 404


def test_the_api_makes_lists_and_revokes_links(mona: Client, room: CallRoom) -> None:
    made = mona.post(
        f"/api/v1/rooms/{room.pk}/invite-links",
        {"label": "API", "max_uses": 3},
        content_type="application/json",
    )
    assert made.status_code == 201
    body = made.json()
    assert body["state"] == "active" and body["url"] == invite_url(body["token"])

    qr = mona.post(
        f"/api/v1/invite-links/{body['id']}/qr",
        {"token": body["token"], "kind": "png"},
        content_type="application/json",
    )
    assert decode_qr(qr.content) == body["url"]
    assert mona.post(f"/api/v1/invite-links/{body['id']}/revoke").json()["state"] == "revoked"
    listed = mona.get(f"/api/v1/rooms/{room.pk}/invite-links").json()
    assert [(link["label"], link["state"]) for link in listed] == [("API", "revoked")]
    assert "token" not in listed[0]


def test_the_api_refuses_an_expiry_in_the_past(mona: Client, room: CallRoom) -> None:
    answer = mona.post(
        f"/api/v1/rooms/{room.pk}/invite-links",
        {"expires_at": "2000-01-01T00:00:00Z"},
        content_type="application/json",
    )

    assert answer.status_code == 400
    assert "expires_at" in answer.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
def test_a_link_with_n_uses_admits_exactly_n_of_many_concurrent_guests() -> None:
    room = CallRoom.objects.create(
        room_id="!Race",
        status=CallRoom.Status.READY,
        registered_by=MODERATOR,
        checked_at=timezone.now(),
    )
    link = invite_link_create(room=room, created_by=MODERATOR, max_uses=5).link
    admitted: list[bool] = []
    start = threading.Barrier(20)

    def guest() -> None:
        start.wait()
        try:
            with transaction.atomic():
                invite_link_redeem(InviteLink.objects.select_related("room").get(pk=link.pk))
            admitted.append(True)
        except InviteLinkUnusable:
            admitted.append(False)
        finally:
            connection.close()

    threads = [threading.Thread(target=guest) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert admitted.count(True) == 5
    assert InviteLink.objects.get(pk=link.pk).use_count == 5
