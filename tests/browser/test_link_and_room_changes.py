"""What moderators change about a room and its links, in a real Chromium on GuestGate's real
web server, with the real worker and homeserver pair: revoking a link, undoing that (only its
revoker or the room's admins), undoing a ban and changing retention policies each leave one
entry in the audit log; a link's expiry is typed and shown in the moderator's time zone; the
moderator's header fits a phone in two rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from accounts.models import RetentionPolicy
from accounts.services import default_policy
from devtools.guestbrowser import GuestBrowser
from devtools.localpair import LocalPair
from matrix import CALL_MEMBER_EVENT, MatrixClient
from rooms.call_rooms import call_room_register
from rooms.invite_links import invite_link_create
from rooms.models import AuditEntry, CallRoom, InviteLink
from tests.browser.axe import page_width
from tests.browser.screenshots import screenshot
from tests.conftest import Person

pytestmark = [
    pytest.mark.browser,
    pytest.mark.homeservers,
    pytest.mark.usefixtures("celery_worker"),
]

Action = AuditEntry.Action


def sign_in(context: BrowserContext, guestgate_web: str, person: Person) -> Page:
    page = context.new_page()
    page.goto(f"{guestgate_web}/moderator/sign-in")
    page.get_by_label("Matrix id").fill(person.user_id)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your rooms")).to_be_visible()
    return page


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def desktop(browser: Browser, contexts: list[BrowserContext], **options: Any) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": 1100, "height": 900}, locale="en-GB", **options
    )
    contexts.append(context)
    return context


def audit_of(room: CallRoom, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(room=room, action=action))


def test_revoking_undoing_and_policy_changes_are_each_one_entry_in_the_audit_log(
    browser: Browser,
    contexts: list[BrowserContext],
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
    invite_token: str,
) -> None:
    short = RetentionPolicy.objects.create(name="Short stay", account_lifetime=timedelta(hours=2))
    room_url = f"{guestgate_web}/moderator/rooms/{call_room.pk}"
    page = sign_in(desktop(browser, contexts), guestgate_web, moderator)
    link = invite_link_create(room=call_room, created_by=moderator.user_id, label="Front door")

    page.goto(f"{room_url}/links")
    page.get_by_role("link", name="Revoke Front door").click()
    page.get_by_role("button", name="Revoke the link").click()
    page.get_by_role("button", name="Undo revoking Front door").click()
    expect(page.get_by_text("“Front door” works again.")).to_be_visible()

    page.get_by_role("link", name="Show link, QR code and poster of Front door").click()
    page.get_by_label("Retention policy").select_option(str(short.pk))
    page.get_by_role("button", name="Change the policy").click()
    expect(page.get_by_text("The link's retention policy is changed.")).to_be_visible()

    page.goto(f"{room_url}/settings")
    page.get_by_label("Retention policy").select_option(str(short.pk))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("The room's settings are saved.")).to_be_visible()
    page.get_by_role("button", name="Save").click()  # saved again unchanged: no change to log

    guest = GuestBrowser(guestgate_web)
    try:
        assert guest.ask_to_join(invite_token, "Trudy").status_code == 302
        guest.wait_for("waiting", timeout=60)
        page.goto(room_url)
        page.get_by_role("button", name="Deny and ban Trudy (Guest)").click()
        page.get_by_role("button", name="Deny and ban", exact=True).click()
        page.get_by_role("button", name="Undo the ban of Trudy (Guest)").click()
        assert guest.wait_for("denied")["status"] == "denied"
    finally:
        guest.close()

    revoked, restored = (
        audit_of(call_room, Action.LINK_REVOKED),
        audit_of(call_room, Action.LINK_RESTORED),
    )
    assert [(e.actor, e.subject_name) for e in revoked] == [(moderator.user_id, "Front door")]
    assert [(e.actor, e.subject_name) for e in restored] == [(moderator.user_id, "Front door")]
    changes = audit_of(call_room, Action.POLICY_CHANGED)
    assert sorted((e.subject_name, e.reason) for e in changes) == [
        ("Front door", f"({default_policy().name}) → Short stay"),
        ("Team call", f"({default_policy().name}) → Short stay"),
    ]
    assert [e.actor for e in changes] == [moderator.user_id] * 2
    assert len(audit_of(call_room, Action.BAN_UNDONE)) == 1
    link.link.refresh_from_db()
    assert link.link.revoked_at is None
    assert link.link.retention_policy == short

    page.goto(f"{room_url}/audit")
    log = page.locator(".audit-log")
    for words in (
        "Front door: invite link revoked",
        "Front door: revoking the invite link undone",
        "Front door: retention policy changed",
        "Team call: retention policy changed",
        "Trudy (Guest): ban undone",
    ):
        entry = log.locator("li", has_text=words)
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text(f"by {moderator.user_id}")
        expect(entry.locator("time")).to_have_text(re.compile(r"\d{4}, \d\d:\d\d:\d\d$"))
    screenshot(page, "audit-room-and-link-changes-desktop")

    page.goto(f"{room_url}/audit?q=Front+door")
    expect(log.locator("li")).to_have_count(3)


@pytest.fixture
def shared_room(
    homeserver_pair: LocalPair, moderator: Person, member: Person, main_bot: MatrixClient
) -> CallRoom:
    """A call room whose admin is the moderator (its creator) and where the member may invite
    (level 50) but not change the room's permissions."""
    pair = homeserver_pair
    bot_id = f"@{pair.bot_localpart}:{pair.main.server_name}"
    room_id = moderator.client.create_room(
        name="Shared call",
        join_rule="knock",
        invite=[bot_id],
        power_level_users={bot_id: 50, member.user_id: 50},
        power_level_events={CALL_MEMBER_EVENT: 0},  # as in tests/conftest.py's knock_room
    )
    main_bot.join(room_id, via=[pair.main.server_name])
    room = call_room_register(room=room_id, registered_by=moderator.user_id)
    assert room.status == CallRoom.Status.READY, room.problems
    return room


def test_only_who_revoked_a_link_or_the_rooms_admins_may_undo_it(
    browser: Browser,
    contexts: list[BrowserContext],
    guestgate_web: str,
    moderator: Person,
    member: Person,
    shared_room: CallRoom,
) -> None:
    links_url = f"{guestgate_web}/moderator/rooms/{shared_room.pk}/links"
    admin = sign_in(desktop(browser, contexts), guestgate_web, moderator)
    # Bypassing the CSP only to send the form the page no longer offers, as a crafted request.
    other = sign_in(desktop(browser, contexts, bypass_csp=True), guestgate_web, member)
    for label in ("Side door", "Back door"):
        invite_link_create(room=shared_room, created_by=moderator.user_id, label=label)

    # The member revokes the side door; the room's admin may take that back.
    other.goto(links_url)
    other.get_by_role("link", name="Revoke Side door").click()
    other.get_by_role("button", name="Revoke the link").click()
    expect(other.get_by_role("button", name="Undo revoking Side door")).to_be_visible()
    admin.goto(links_url)
    admin.get_by_role("button", name="Undo revoking Side door").click()
    expect(admin.get_by_text("“Side door” works again.")).to_be_visible()

    # The admin revokes the back door; the member is told who may undo it, and may not.
    admin.get_by_role("link", name="Revoke Back door").click()
    admin.get_by_role("button", name="Revoke the link").click()
    other.goto(links_url)
    expect(other.get_by_text(f"“Back door” was revoked by {moderator.user_id}")).to_be_visible()
    expect(other.get_by_role("button", name="Undo revoking Back door")).to_have_count(0)
    back_door = InviteLink.objects.get(label="Back door")
    other.evaluate(
        """(action) => {
             const form = document.createElement('form');
             form.method = 'post';
             form.action = action;
             form.append(document.querySelector('[name=csrfmiddlewaretoken]').cloneNode());
             document.body.append(form);
             form.submit();
           }""",
        f"/moderator/links/{back_door.pk}/restore",
    )
    expect(
        other.get_by_text(
            f"Only {moderator.user_id}, who revoked “Back door”, or the room's admins may undo"
        )
    ).to_be_visible()
    back_door.refresh_from_db()
    assert back_door.revoked_at is not None
    assert back_door.revoked_by == moderator.user_id
    restored = audit_of(shared_room, Action.LINK_RESTORED)
    assert [(e.actor, e.subject_name) for e in restored] == [(moderator.user_id, "Side door")]
    revoked = audit_of(shared_room, Action.LINK_REVOKED)
    assert sorted((e.actor, e.subject_name) for e in revoked) == sorted(
        [(member.user_id, "Side door"), (moderator.user_id, "Back door")]
    )


def test_a_links_expiry_is_typed_and_shown_in_the_moderators_time_zone(
    browser: Browser,
    contexts: list[BrowserContext],
    guestgate_web: str,
    moderator: Person,
    call_room: CallRoom,
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    page = sign_in(
        desktop(browser, contexts, timezone_id="Europe/Berlin"), guestgate_web, moderator
    )
    day = (datetime.now(berlin) + timedelta(days=2)).date()
    expected = datetime(day.year, day.month, day.day, 10, 30, tzinfo=berlin)

    page.goto(f"{guestgate_web}/moderator/rooms/{call_room.pk}/links")
    page.get_by_label("Label", exact=True).fill("Until the talk")
    page.get_by_label("…or expires on").fill(f"{day.isoformat()}T10:30")
    page.get_by_role("button", name="Make the link").click()

    expect(
        page.get_by_text(f"It expires on {day.isoformat()} 10:30 (Europe/Berlin time).")
    ).to_be_visible()
    link = InviteLink.objects.get(label="Until the talk")
    assert link.expires_at == expected
    assert link.expires_at.utcoffset() is not None

    page.get_by_role("link", name="All links of this room").click()
    shown = page.locator("li.knock", has_text="Until the talk").locator("time")
    # en-GB, in Berlin: "2 Dec 2026, 10:30:00", whatever the server's zone (UTC).
    expect(shown).to_have_text(f"{day.day} {day.strftime('%b')} {day.year}, 10:30:00")


@pytest.mark.parametrize("width", [375, 320])
def test_the_moderators_header_is_two_rows_at_most_on_a_phone(
    browser: Browser,
    contexts: list[BrowserContext],
    guestgate_web: str,
    moderator: Person,
    width: int,
) -> None:
    context = browser.new_context(
        viewport={"width": width, "height": 700}, is_mobile=True, has_touch=True
    )
    contexts.append(context)
    page = sign_in(context, guestgate_web, moderator)

    header = page.locator(".site-header .inner")
    parts = header.locator(".brand, .site-nav a, .site-nav button, .user")
    expect(parts).to_have_count(4)
    for part in parts.all():
        expect(part).to_be_visible()
    boxes = [box for part in parts.all() if (box := part.bounding_box()) is not None]
    rows: list[list[float]] = []  # [top, bottom] of each row; a part overlapping one is in it
    for box in sorted(boxes, key=lambda box: box["y"]):
        if rows and box["y"] < rows[-1][1] - 1:
            rows[-1][1] = max(rows[-1][1], box["y"] + box["height"])
        else:
            rows.append([box["y"], box["y"] + box["height"]])
    assert len(rows) <= 2, f"the header's parts sit in {len(rows)} rows: {rows}"
    tallest = max(box["height"] for box in boxes)
    padding = header.evaluate(
        "(inner) => parseFloat(getComputedStyle(inner).paddingTop)"
        " + parseFloat(getComputedStyle(inner).paddingBottom)"
    )
    height = header.bounding_box()
    assert height is not None
    assert height["height"] <= 2 * tallest + padding + 1
    assert page_width(page) <= width
    # The whole Matrix id is still there for a screen reader and on hover.
    expect(header.locator(".user")).to_have_attribute("title", moderator.user_id)
    expect(header.locator(".user")).to_contain_text(moderator.user_id)
    screenshot(page, f"header-moderator-{width}")
