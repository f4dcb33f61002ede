"""Invite links: tokens, QR codes decoded back, revocation, usage limits under concurrency."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from accounts.models import RetentionPolicy
from guestgate.crypto import token_hash
from rooms.invite_links import (
    REVOKE_UNDO_WINDOW,
    InviteLinkUnusable,
    invite_link_create,
    invite_link_for_token,
    invite_link_redeem,
    invite_link_token,
    invite_url,
)
from rooms.models import AuditEntry, CallRoom, InviteLink
from rooms.provisioning import policy_for_link
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


def test_a_token_has_at_least_128_random_bits_and_is_never_stored_in_clear(
    room: CallRoom,
) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)

    assert len(new.token) == 26 and new.token.isalnum() and new.token == new.token.lower()
    assert 26 * math.log2(32) >= 128
    stored = InviteLink.objects.filter(pk=new.link.pk).values().get()
    assert not any(new.token in str(value).lower() for value in stored.values())
    assert stored["token_hash"] == token_hash(new.token)
    assert invite_link_token(InviteLink.objects.get(pk=new.link.pk)) == new.token


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


def test_making_a_link_shows_its_address_and_qr_and_they_can_be_shown_again(
    mona: Client, room: CallRoom
) -> None:
    made = mona.post(
        f"/moderator/rooms/{room.pk}/links",
        {"label": "Poster at reception", "max_uses": "20"},
        follow=True,
    )

    page = made.content.decode()
    link = InviteLink.objects.get()
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    assert "Poster at reception" in page and "<svg" in page
    url = page.split('id="invite-url" value="')[1].split('"')[0]
    listing = mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()
    assert "used 0 of 20 times" in listing and "Show link, QR code and poster" in listing
    assert link.token_hash not in listing and url not in listing
    again = mona.get(f"/moderator/links/{link.pk}").content.decode()
    assert url in again and token_hash(url.rsplit("/", 1)[1]) == link.token_hash


def test_a_link_made_before_tokens_were_kept_says_it_cannot_be_shown_again(
    mona: Client, room: CallRoom
) -> None:
    old = invite_link_create(room=room, created_by=MODERATOR).link
    InviteLink.objects.filter(pk=old.pk).update(token_encrypted="")

    page = mona.get(f"/moderator/links/{old.pk}").content.decode()

    assert "cannot be shown" in page and "/j/" not in page
    assert mona.get(f"/moderator/links/{old.pk}/qr.png").status_code == 404
    assert mona.get(f"/moderator/links/{old.pk}/poster").status_code == 404
    assert "cannot be shown again" in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()


def test_the_qr_download_is_the_links_own(mona: Client, room: CallRoom) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)

    png = mona.get(f"/moderator/links/{new.link.pk}/qr.png")
    svg = mona.get(f"/moderator/links/{new.link.pk}/qr.svg")

    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert png["Cache-Control"] == "no-store"
    assert decode_qr(png.content) == invite_url(new.token)
    assert svg.content.startswith(b"<svg")
    assert mona.get(f"/moderator/links/{new.link.pk}/qr.gif").status_code == 404


def test_the_poster_shows_the_room_the_qr_and_the_typable_code(
    mona: Client, room: CallRoom
) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)

    poster = mona.get(
        f"/moderator/links/{new.link.pk}/poster", {"instructions": "Scan me <b>now</b>"}
    )

    html = poster.content.decode()
    assert "Join Team call" in html and "<svg" in html
    t = new.token
    assert f"{t[:5]}-{t[5:10]}-{t[10:15]}-{t[15:20]}-{t[20:]}" in html  # no lonely last letter
    assert "Scan me &lt;b&gt;now&lt;/b&gt;" in html


def test_a_link_expires_after_a_typed_duration(mona: Client, room: CallRoom) -> None:
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False):
        mona.post(f"/moderator/rooms/{room.pk}/links", {"expires_in": "1d 12h"})

    assert InviteLink.objects.get().expires_at == datetime(2026, 12, 2, 22, 0, tzinfo=UTC)


def test_a_link_expires_at_a_date_and_time(mona: Client, room: CallRoom) -> None:
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False):
        mona.post(f"/moderator/rooms/{room.pk}/links", {"expires_at": "2026-12-24T18:30"})

    assert InviteLink.objects.get().expires_at == datetime(2026, 12, 24, 18, 30, tzinfo=UTC)


def test_a_link_may_name_a_retention_policy_of_its_own(mona: Client, room: CallRoom) -> None:
    german = RetentionPolicy.objects.get(name="Deutsch")

    mona.post(f"/moderator/rooms/{room.pk}/links", {"retention_policy": str(german.pk)})

    link = InviteLink.objects.select_related("room").get()
    assert link.retention_policy == german and policy_for_link(link).displayname_suffix == " (Gast)"
    assert "policy: Deutsch" in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_uses": "0"}, "max_uses"),
        ({"expires_in": "-3h"}, "expires_in"),
        ({"expires_in": "2 hours"}, "expires_in"),
        ({"expires_in": "30s"}, "expires_in"),
        ({"expires_at": "2000-01-01T00:00"}, "expires_at"),
        ({"expires_in": "2h", "expires_at": "2999-01-01T00:00"}, "expires_at"),
        ({"retention_policy": "999999"}, "retention_policy"),
        ({"label": "x" * 101}, "label"),
    ],
)
def test_bad_link_settings_are_form_errors(
    mona: Client, room: CallRoom, data: dict[str, str], field: str
) -> None:
    answer = mona.post(f"/moderator/rooms/{room.pk}/links", data)

    assert answer.status_code == 400
    page = answer.content.decode()
    assert f'id="id_{field}_error"' in page and 'role="alert"' in page
    assert f'aria-describedby="id_{field}_helptext id_{field}_error"' in page or (
        f'aria-describedby="id_{field}_error"' in page
    )
    assert not InviteLink.objects.exists()


def test_a_duration_that_cannot_be_read_is_refused_with_the_format_named(
    mona: Client, room: CallRoom
) -> None:
    page = mona.post(f"/moderator/rooms/{room.pk}/links", {"expires_in": "2 hours"})

    assert "Enter a duration such as 2h, 90m or 1d 12h." in page.content.decode()


def test_revoking_asks_first_and_then_the_link_stops_working_at_once(
    mona: Client, room: CallRoom
) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)
    assert Client().get(f"/j/{new.token}").status_code == 200

    asked = mona.get(f"/moderator/links/{new.link.pk}/revoke")
    assert "Revoke the link" in asked.content.decode()
    assert Client().get(f"/j/{new.token}").status_code == 200
    mona.post(f"/moderator/links/{new.link.pk}/revoke")

    answer = Client().get(f"/j/{new.token}")
    assert answer.status_code == 410 and b"withdrawn" in answer.content
    assert "revoked" in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()


def test_a_revocation_can_be_undone_within_its_window_and_not_after(
    mona: Client, room: CallRoom
) -> None:
    new = invite_link_create(room=room, created_by=MODERATOR)
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False) as clock:
        mona.post(f"/moderator/links/{new.link.pk}/revoke")
        clock.shift(REVOKE_UNDO_WINDOW)  # valid at the limit
        assert "Undo" in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()
        mona.post(f"/moderator/links/{new.link.pk}/restore")
        assert invite_link_for_token(new.token) == new.link

        mona.post(f"/moderator/links/{new.link.pk}/revoke")
        clock.shift(REVOKE_UNDO_WINDOW + timedelta(seconds=1))  # one second too late
        assert "Undo" not in mona.get(f"/moderator/rooms/{room.pk}/links").content.decode()
        late = mona.post(f"/moderator/links/{new.link.pk}/restore", follow=True)

    assert "Too late to undo" in late.content.decode()
    with pytest.raises(InviteLinkUnusable):
        invite_link_for_token(new.token)


def test_someone_without_the_power_to_invite_cannot_manage_links(room: CallRoom) -> None:
    outsider = Client()
    outsider.force_login(
        User.objects.create(username="@otto:main.test"),
        backend="rooms.moderators.MatrixModeratorBackend",
    )

    new = invite_link_create(room=room, created_by=MODERATOR)
    assert outsider.get(f"/moderator/rooms/{room.pk}/links").status_code == 404
    assert outsider.post(f"/moderator/rooms/{room.pk}/links", {}).status_code == 404
    for path in ("", "/qr.png", "/poster", "/revoke"):
        assert outsider.get(f"/moderator/links/{new.link.pk}{path}").status_code == 404
    assert outsider.post(f"/moderator/links/{new.link.pk}/revoke").status_code == 404
    assert invite_link_for_token(new.token) == new.link


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


def test_an_expiry_date_is_read_in_the_browsers_time_zone(mona: Client, room: CallRoom) -> None:
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False):
        made = mona.post(
            f"/moderator/rooms/{room.pk}/links",
            {"label": "Berlin", "expires_at": "2026-12-02T10:30", "time_zone": "Europe/Berlin"},
            follow=True,
        )

    link = InviteLink.objects.get(label="Berlin")
    assert link.expires_at == datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # CET is UTC+1
    assert "It expires on 2026-12-02 10:30 (Europe/Berlin time)." in made.content.decode()


@pytest.mark.parametrize("said", ["", "Mars/Olympus_Mons", "../../etc/passwd", "x" * 200])
def test_an_expiry_date_without_a_known_time_zone_is_read_in_utc_and_said_so(
    mona: Client, room: CallRoom, said: str
) -> None:
    with time_machine.travel("2026-12-01 10:00:00Z", tick=False):
        made = mona.post(
            f"/moderator/rooms/{room.pk}/links",
            {"label": "Nowhere", "expires_at": "2026-12-02T10:30", "time_zone": said},
            follow=True,
        )

    assert made.status_code == 200
    assert InviteLink.objects.get(label="Nowhere").expires_at == datetime(
        2026, 12, 2, 10, 30, tzinfo=UTC
    )
    assert "It expires on 2026-12-02 10:30 (UTC time)." in made.content.decode()


def test_a_moment_passed_where_the_moderator_is_is_refused(mona: Client, room: CallRoom) -> None:
    # 10:30 in Berlin is 09:30 UTC: passed at 10:00 UTC, though 10:30 UTC has not come yet.
    with time_machine.travel("2026-12-02 10:00:00Z", tick=False):
        page = mona.post(
            f"/moderator/rooms/{room.pk}/links",
            {"label": "Late", "expires_at": "2026-12-02T10:30", "time_zone": "Europe/Berlin"},
        )

    assert page.status_code == 400
    assert "That moment has passed already." in page.content.decode()
    assert not InviteLink.objects.filter(label="Late").exists()


def test_another_moderator_may_not_undo_a_revocation_and_nothing_changes(
    mona: Client, room: CallRoom
) -> None:
    # Both may invite, neither may change the room's permissions (not its admins).
    room.power_levels["users"]["@otto:main.test"] = 50
    room.power_levels["events"] = {"m.room.power_levels": 100}
    room.save()
    otto = Client()
    otto.force_login(
        User.objects.create(username="@otto:main.test"),
        backend="rooms.moderators.MatrixModeratorBackend",
    )
    new = invite_link_create(room=room, created_by=MODERATOR, label="Desk")
    mona.post(f"/moderator/links/{new.link.pk}/revoke")

    links_page = otto.get(f"/moderator/rooms/{room.pk}/links").content.decode()
    refused = otto.post(f"/moderator/links/{new.link.pk}/restore", follow=True)

    assert "Undo revoking Desk" not in links_page
    assert f"“Desk” was revoked by {MODERATOR}" in links_page
    assert (
        f"Only {MODERATOR}, who revoked “Desk”, or the room&#x27;s admins may undo that."
        in refused.content.decode()
    )
    with pytest.raises(InviteLinkUnusable):
        invite_link_for_token(new.token)
    assert list(AuditEntry.objects.values_list("action", "actor", "subject_name")) == [
        (AuditEntry.Action.LINK_REVOKED, MODERATOR, "Desk")
    ]


def test_a_links_policy_change_is_audited_once_and_an_unknown_policy_changes_nothing(
    mona: Client, room: CallRoom
) -> None:
    short = RetentionPolicy.objects.create(name="Short stay", account_lifetime=timedelta(hours=2))
    new = invite_link_create(room=room, created_by=MODERATOR, label="Desk")

    refused = mona.post(
        f"/moderator/links/{new.link.pk}/policy", {"retention_policy": "99999"}, follow=True
    )
    assert "Select a valid choice." in refused.content.decode()
    for _twice in range(2):  # the second time it is that already: nothing to record
        mona.post(f"/moderator/links/{new.link.pk}/policy", {"retention_policy": short.pk})

    new.link.refresh_from_db()
    assert new.link.retention_policy == short
    assert list(AuditEntry.objects.values_list("action", "actor", "subject_name")) == [
        (AuditEntry.Action.POLICY_CHANGED, MODERATOR, "Desk")
    ]
