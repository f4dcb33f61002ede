"""Join requests: a guest's way into a call room, from the typed name to the join.

Every state change is a conditional UPDATE on ``status`` (``move_join_request``) that bumps
``version``; a change that finds the row in another state did not happen, because someone
(a moderator click, a homeserver push, another worker) got there first. Homeserver calls
happen outside database transactions; tasks are enqueued only after commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from accounts.displaynames import CleanName
from accounts.models import GuestAccount, RetentionPolicy
from accounts.services import (
    default_policy,
    guest_account_create,
    guest_account_log_in_again,
    guest_account_provision,
    guest_account_rename,
    guest_account_returning,
)
from accounts.spares import spare_account_take, spare_accounts_refill_after_commit
from guestgate import homeservers
from guestgate.crypto import new_token
from guestgate.errors import GuestGateError
from matrix import Forbidden, MatrixClient, MatrixError
from rooms.invite_links import invite_link_redeem
from rooms.live import changes
from rooms.models import AuditEntry, CallRoom, InviteLink, JoinRequest, MembershipEvent

logger = logging.getLogger(__name__)

Status = JoinRequest.Status


@dataclass(frozen=True)
class Audit:
    action: str
    actor: str
    reason: str = ""
    via_guestgate: bool = True


def move_join_request(
    join_request: JoinRequest,
    *,
    from_: Iterable[str],
    to: str,
    audit: Audit | None = None,
    **fields: object,
) -> bool:
    """Change the status if it is one of ``from_``; True if this call made the change.

    The audit entry, if any, is written in the same transaction, only when the change happened.
    """
    with transaction.atomic():
        changed = JoinRequest.objects.filter(pk=join_request.pk, status__in=list(from_)).update(
            status=to, version=F("version") + 1, updated_at=timezone.now(), **fields
        )
        if changed == 1:
            changes.poke_after_commit()  # this process's long polls hear of it at once
        if changed == 1 and audit is not None:
            AuditEntry.objects.create(
                room_id=join_request.room_id,
                join_request=join_request,
                action=audit.action,
                actor=audit.actor,
                subject=join_request.user_id,
                subject_name=join_request.display_name,
                reason=audit.reason,
                via_guestgate=audit.via_guestgate,
            )
    return changed == 1


def enqueue_after_commit(task_name: str, join_request_id: int) -> None:
    from rooms import tasks  # tasks call these services; import here to avoid the cycle

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(join_request_id))


def _via() -> list[str]:
    return [settings.MAIN_HS_SERVER_NAME]


@dataclass(frozen=True)
class GuestArrival:
    join_request: JoinRequest
    browser_key: str  # kept by the guest's browser so a returning guest gets the same account


# The lobby's reason for a guest the room had banned before they knocked (stored in English,
# shown translated: guestgate.i18n).
BANNED_BEFORE = gettext_noop("You cannot join this call.")


class RoomFull(GuestGateError):
    code = "room.full"
    status = 503


def policy_for_link(link: InviteLink) -> RetentionPolicy:
    """The link's own retention policy, else its room's, else the default one."""
    return link.retention_policy or link.room.retention_policy or default_policy()


def join_request_start(
    *,
    link: InviteLink,
    name: CleanName,
    browser_key: str | None,
    policy: RetentionPolicy | None = None,
) -> GuestArrival:
    """Record a guest arriving through ``link``; a task then creates the account and knocks.

    A returning guest (same browser, within the return window) keeps their account; one who
    submits twice gets the request already under way. Raises InviteLinkUnusable when the
    link is used up or withdrawn in the meantime; nothing is created then. ``policy``: the
    link's (``policy_for_link``), if the caller has it already.
    """
    policy = policy or policy_for_link(link)
    with transaction.atomic():
        # A browser without a key has no account to come back to.
        account = guest_account_returning(browser_key=browser_key) if browser_key else None
        browser_key = browser_key or new_token(32)
        if account is not None:
            under_way = JoinRequest.objects.filter(
                room=link.room, user_id=account.user_id, status__in=JoinRequest.OPEN
            ).first()
            if under_way is not None:
                return GuestArrival(under_way, browser_key)
            guest_account_rename(account, display_name=name.shown)
        if (
            policy.max_guests_per_room is not None
            and JoinRequest.objects.filter(
                room=link.room,
                guest__isnull=False,
                status__in=[*JoinRequest.OPEN, Status.JOINED],
                guest__status__in=[GuestAccount.Status.PENDING, GuestAccount.Status.ACTIVE],
            ).count()
            >= policy.max_guests_per_room
        ):
            raise RoomFull(
                gettext(
                    "This call has as many guests as it allows right now. Please try again later."
                )
            )
        invite_link_redeem(link)
        if account is None:
            account = spare_account_take(
                display_name=name.shown, browser_key=browser_key, policy=policy
            ) or guest_account_create(
                display_name=name.shown, browser_key=browser_key, policy=policy
            )
        join_request = JoinRequest.objects.create(
            public_id=uuid.uuid4(),
            room=link.room,
            guest=account,
            invite_link=link,
            user_id=account.user_id,
            display_name=name.shown,
            status=Status.PROVISIONING,
        )
        enqueue_after_commit("provision_join_request", join_request.pk)
        spare_accounts_refill_after_commit()  # after the guest's task: it must not wait
    logger.info("join request %s: guest %s arriving", join_request.pk, account.user_id)
    return GuestArrival(join_request, browser_key)


def _knocked(join_request: JoinRequest) -> Audit:
    return Audit(AuditEntry.Action.KNOCKED, actor=join_request.user_id)


def join_request_provision(join_request: JoinRequest) -> None:
    """Create the guest's account on the guest homeserver and knock on the call room.

    Idempotent: a retry after a failure at any step completes the remaining steps.
    """
    if join_request.status != Status.PROVISIONING or join_request.guest is None:
        return
    with homeservers.guest_appservice() as appservice:  # one connection for every call
        guest_account_provision(join_request.guest, appservice)
        membership = _ensure_knocked(join_request, appservice)
    if membership == "ban":
        move_join_request(
            join_request,
            from_=[Status.PROVISIONING],
            to=Status.BANNED,
            reason=BANNED_BEFORE,
        )
    elif membership == "invite":
        if move_join_request(join_request, from_=[Status.PROVISIONING], to=Status.INVITED):
            enqueue_after_commit("join_guest", join_request.pk)
    elif membership == "join":
        move_join_request(join_request, from_=[Status.PROVISIONING], to=Status.JOINED)
    else:
        # The main server's push of the knock may have moved the request on already.
        move_join_request(
            join_request,
            from_=[Status.PROVISIONING],
            to=Status.WAITING,
            audit=_knocked(join_request),
        )
        join_request.refresh_from_db(fields=["status", "version", "decided_by"])
        link = join_request.invite_link
        if join_request.status == Status.WAITING and link is not None and link.pre_approved:
            from rooms.moderation import join_request_approve

            join_request_approve(join_request, moderator=PRE_APPROVED)
        elif join_request.status == Status.CANCELLED:
            # The guest cancelled while the knock was on its way: take it back.
            enqueue_after_commit("withdraw_knock", join_request.pk)


PRE_APPROVED = "a pre-approved invite link"


def _ensure_knocked(join_request: JoinRequest, appservice: MatrixClient) -> str:
    """Knock as the guest; the membership on main afterwards (knock, invite, join or ban)."""
    room_id = join_request.room.room_id
    try:
        appservice.as_user(join_request.user_id).knock(room_id, via=_via())
        return "knock"
    except Forbidden:
        # Already knocking, already invited (a retry), or banned: the main server knows.
        with homeservers.main_bot() as bot:
            member = bot.member(room_id, join_request.user_id)
        if member is None or member.membership not in ("knock", "invite", "join", "ban"):
            raise
        return member.membership


def join_request_join(join_request: JoinRequest) -> None:
    """Join the invited guest to the room (retrying the invite/join race of MATRIX-LAB P8)."""
    if join_request.status not in (Status.INVITED, Status.JOINING) or join_request.guest is None:
        return  # people with their own Matrix account join by themselves
    move_join_request(join_request, from_=[Status.INVITED], to=Status.JOINING)
    account = join_request.guest
    with homeservers.guest_appservice() as appservice:
        if account.registered_at is not None and account.registered_at < join_request.created_at:
            # A token from before this request (a spare's, a returning guest's) may have died
            # since (they signed out in their Matrix client): the lobby hands out a live one.
            # Before the join: main's push of the join tells the lobby.
            guest_account_log_in_again(appservice, account)
        appservice.as_user(join_request.user_id).ensure_joined(
            join_request.room.room_id, via=_via()
        )
    move_join_request(
        join_request,
        from_=[Status.INVITED, Status.JOINING],
        to=Status.JOINED,
        audit=Audit(AuditEntry.Action.JOINED, actor=join_request.user_id),
    )


def join_request_cancel(join_request: JoinRequest) -> bool:
    """The guest gives up waiting; their knock is taken back on the main server too."""
    with transaction.atomic():
        if not move_join_request(
            join_request,
            from_=[Status.PROVISIONING, Status.WAITING],
            to=Status.CANCELLED,
            audit=Audit(AuditEntry.Action.CANCELLED, actor=join_request.user_id),
        ):
            return False
        enqueue_after_commit("withdraw_knock", join_request.pk)
    return True


def join_request_withdraw_knock(join_request: JoinRequest) -> None:
    """Leave as the guest, then kick what is left on main (MATRIX-LAB P7: a withdrawn knock
    is not federated, so main would keep showing it)."""
    room_id = join_request.room.room_id
    with homeservers.guest_appservice() as appservice:
        try:
            appservice.as_user(join_request.user_id).leave(room_id, reason="cancelled")
        except MatrixError as exc:
            if exc.retryable:
                raise
            logger.info("guest %s had no knock to withdraw (%s)", join_request.user_id, exc.code)
    with homeservers.main_bot() as bot:
        member = bot.member(room_id, join_request.user_id)
        if member is not None and member.membership == "knock":
            bot.ensure_kicked(room_id, join_request.user_id, reason="The guest cancelled.")


def join_request_fail(join_request: JoinRequest, *, message: str) -> None:
    move_join_request(
        join_request,
        from_=[Status.PROVISIONING, Status.INVITED, Status.JOINING],
        to=Status.FAILED,
        reason=message,
        audit=Audit(AuditEntry.Action.FAILED, actor="GuestGate", reason=message),
    )


def join_request_note_retry(join_request: JoinRequest) -> None:
    """Count a homeserver retry, so the lobby can say it is still working."""
    JoinRequest.objects.filter(pk=join_request.pk, status__in=JoinRequest.OPEN).update(
        attempts=F("attempts") + 1, version=F("version") + 1, updated_at=timezone.now()
    )
    changes.poke_after_commit()


def join_request_retry(join_request: JoinRequest) -> bool:
    """Start a failed request over; the steps already done are not repeated."""
    try:
        with transaction.atomic():
            if not move_join_request(
                join_request, from_=[Status.FAILED], to=Status.PROVISIONING, reason="", attempts=0
            ):
                return False
            enqueue_after_commit("provision_join_request", join_request.pk)
    except IntegrityError:  # another request of this guest for this room is already open
        return False
    return True


def join_requests_follow_membership(events: Sequence[MembershipEvent]) -> None:
    """Apply what the main homeserver says happened, whoever did it (GuestGate or Element).

    Main's room state is the truth about a knock (DESIGN.md): a kick there is a denial even
    though the guest homeserver never learns of it (MATRIX-LAB P7). Knocks by people with
    their own Matrix account become join requests too, so moderators see every knock.
    """
    for event in events:
        join_request = (
            JoinRequest.objects.select_related("room")
            .filter(room__room_id=event.room_id, user_id=event.user_id, status__in=JoinRequest.OPEN)
            .order_by("-created_at")
            .first()
        )
        if join_request is None:
            if event.membership == "knock":
                _knock_without_request(event)
            continue
        if not _older_than(event, join_request):
            _follow(join_request, event)


def _knock_without_request(knock: MembershipEvent) -> None:
    latest = (
        JoinRequest.objects.filter(room__room_id=knock.room_id, user_id=knock.user_id)
        .order_by("-created_at")
        .first()
    )
    if latest is not None and not _older_than(knock, latest):
        if latest.status in (Status.CANCELLED, Status.EXPIRED):
            # Landed on main after its request was cancelled (MATRIX-LAB P5: a knock can
            # arrive ~0.2 s after the call returned): kick it, so it does not linger.
            enqueue_after_commit("withdraw_knock", latest.pk)
            return
        if latest.guest_id is not None:
            return  # one of our guests' knocks, already accounted for
    call_room = CallRoom.objects.filter(room_id=knock.room_id).first()
    if call_room is None:
        return
    try:
        with transaction.atomic():
            join_request = JoinRequest.objects.create(
                public_id=uuid.uuid4(),
                room=call_room,
                user_id=knock.user_id,
                display_name=knock.displayname or knock.user_id,
                status=Status.WAITING,
                reason=knock.reason,
            )
            AuditEntry.objects.create(
                room=call_room,
                join_request=join_request,
                action=AuditEntry.Action.KNOCKED,
                actor=knock.user_id,
                subject=knock.user_id,
                subject_name=join_request.display_name,
                reason=knock.reason,
                via_guestgate=False,
            )
    except IntegrityError:
        pass  # the same knock, pushed twice at once


def _older_than(event: MembershipEvent, join_request: JoinRequest) -> bool:
    """An event from before this request (e.g. the kick that cleared an earlier knock)."""
    if event.origin_server_ts is None:
        return False
    return event.origin_server_ts < join_request.created_at.timestamp() * 1000 - 1000


def _follow(join_request: JoinRequest, event: MembershipEvent) -> None:
    sender = event.sender
    by_guestgate = sender == homeservers.main_bot_user_id()

    # Decisions GuestGate's bot carried out are audited by the service that asked for them.
    def audit(action: str) -> Audit | None:
        return None if by_guestgate else Audit(action, sender, event.reason, via_guestgate=False)

    first_decider = Case(When(decided_by="", then=Value(sender)), default=F("decided_by"))
    match event.membership:
        case "knock":
            move_join_request(
                join_request,
                from_=[Status.PROVISIONING],
                to=Status.WAITING,
                audit=_knocked(join_request),
            )
        case "invite":
            with transaction.atomic():
                if move_join_request(
                    join_request,
                    from_=[Status.PROVISIONING, Status.WAITING],
                    to=Status.INVITED,
                    decided_by=first_decider,
                    audit=audit(AuditEntry.Action.APPROVED),
                ):
                    enqueue_after_commit("join_guest", join_request.pk)
        case "join":
            move_join_request(
                join_request,
                from_=JoinRequest.OPEN,
                to=Status.JOINED,
                audit=Audit(AuditEntry.Action.JOINED, actor=event.user_id),
            )
        case "leave" if sender == event.user_id:
            move_join_request(
                join_request,
                from_=JoinRequest.OPEN,
                to=Status.CANCELLED,
                audit=Audit(AuditEntry.Action.CANCELLED, actor=sender, via_guestgate=False),
            )
        case "leave":
            move_join_request(
                join_request,
                from_=JoinRequest.OPEN,
                to=Status.DENIED,
                reason=event.reason,
                decided_by=first_decider,
                audit=audit(AuditEntry.Action.DENIED),
            )
        case "ban":
            move_join_request(
                join_request,
                from_=JoinRequest.OPEN,
                to=Status.BANNED,
                reason=event.reason,
                decided_by=first_decider,
                audit=audit(AuditEntry.Action.BANNED),
            )


def join_requests_expire_for(account: GuestAccount) -> None:
    """Close an expiring guest's open requests (their lobbies say "expired"), then kick any
    knock of theirs still pending on main (a deactivated knocker would otherwise stay in the
    queue there: MATRIX-LAB P7). Safe to repeat: the kick reads main's state first."""
    for join_request in JoinRequest.objects.filter(guest=account, status__in=JoinRequest.OPEN):
        move_join_request(
            join_request,
            from_=JoinRequest.OPEN,
            to=Status.EXPIRED,
            audit=Audit(AuditEntry.Action.EXPIRED, actor="GuestGate"),
        )
    room_ids = set(
        JoinRequest.objects.filter(guest=account, status=Status.EXPIRED).values_list(
            "room__room_id", flat=True
        )
    )
    if not room_ids:
        return  # a spare, or a guest who never got as far as a knock
    with homeservers.main_bot() as bot:
        for room_id in room_ids:
            member = bot.member(room_id, account.user_id)
            if member is not None and member.membership == "knock":
                bot.ensure_kicked(room_id, account.user_id, reason="The guest pass expired.")
