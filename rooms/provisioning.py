"""A guest's way into a call room, from the typed name to the knock; cancelling and trying again.

Homeserver calls happen outside database transactions; tasks are queued only after commit.
Status changes go through ``rooms.transitions``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from celery import Task, shared_task
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.displaynames import CleanName
from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import guest_account_returning
from accounts.services import (
    default_policy,
    guest_account_create,
    guest_account_provision,
    guest_account_rename,
)
from accounts.spares import spare_account_take, spare_accounts_refill_after_commit
from guestgate import homeservers
from guestgate.crypto import new_token
from guestgate.errors import GuestGateError
from guestgate.retrying import run_retrying, send_after_commit
from matrix import Forbidden, HomeserverUnavailable, MatrixClient, MatrixError
from rooms.calls import call_members_clear_due, clear_call_members
from rooms.guest_steps import guest_step_run, join_request_load
from rooms.invite_links import invite_link_redeem
from rooms.joining import join_after_commit, join_guest, via
from rooms.messages import BANNED_BEFORE, MAIN_UNREACHABLE_ERROR
from rooms.models import InviteLink, JoinRequest
from rooms.moderation import approve_claimed, join_request_approve
from rooms.transitions import (
    By,
    join_request_banned,
    join_request_cancelled,
    join_request_invited,
    join_request_joined,
    join_request_knocked,
    join_request_restarted,
)

logger = logging.getLogger(__name__)

Status = JoinRequest.Status

#: The approver recorded for guests of a pre-approved invite link.
PRE_APPROVED = "a pre-approved invite link"


@dataclass(frozen=True)
class GuestArrival:
    join_request: JoinRequest
    browser_key: str  # kept by the guest's browser so a returning guest gets the same account


class MainUnreachable(HomeserverUnavailable):
    """The guest homeserver could not knock, and the main homeserver does not answer either."""

    code = MAIN_UNREACHABLE_ERROR


class RoomFull(GuestGateError):
    code = "room.full"
    status = 503


@dataclass(frozen=True)
class ReturningGuest:
    """A browser that has been here before: the name it came with, and its request for the
    link's room that its lobby still shows (open, in the call, or banned), if any."""

    display_name: str  # as on Matrix, with the guest suffix
    typed_name: str  # as the guest typed it
    join_request: JoinRequest | None


#: A returning guest's latest request in these is still their lobby ("Continue" goes back to
#: it); after the others (cancelled, denied, expired…) "Continue" asks again under their name.
_STILL_THEIR_LOBBY = (*JoinRequest.OPEN, Status.JOINED, Status.BANNED, Status.FAILED)


def returning_guest_for_link(
    *, link: InviteLink, browser_key: str | None, policy: RetentionPolicy
) -> ReturningGuest | None:
    """The guest this browser was at ``link``'s room (its browser key cookie names a live guest
    account within its return window), or None for a browser new here."""
    account = guest_account_returning(browser_key=browser_key) if browser_key else None
    if account is None:
        return None
    latest = (
        JoinRequest.objects.filter(room=link.room, guest=account).order_by("-created_at").first()
    )
    suffix = policy.displayname_suffix
    typed = account.display_name
    if suffix and typed.endswith(suffix):
        typed = typed[: -len(suffix)]
    return ReturningGuest(
        display_name=account.display_name,
        typed_name=typed.strip() or account.display_name,
        join_request=latest if latest is not None and latest.status in _STILL_THEIR_LOBBY else None,
    )


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
        _refuse_if_full(link, policy)
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
        _provision_after_commit(join_request)
        spare_accounts_refill_after_commit()  # after the guest's task: it must not wait
    logger.info("join request %s: guest %s arriving", join_request.pk, account.user_id)
    return GuestArrival(join_request, browser_key)


def _refuse_if_full(link: InviteLink, policy: RetentionPolicy) -> None:
    if policy.max_guests_per_room is None:
        return
    guests = JoinRequest.objects.filter(
        room=link.room,
        guest__isnull=False,
        status__in=[*JoinRequest.OPEN, Status.JOINED],
        guest__status__in=[GuestAccount.Status.PENDING, GuestAccount.Status.ACTIVE],
    ).count()
    if guests >= policy.max_guests_per_room:
        raise RoomFull(
            gettext("This call has as many guests as it allows right now. Please try again later.")
        )


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
        join_request_banned(join_request, decider=None, by=None, reason_code=BANNED_BEFORE)
    elif membership == "invite":
        with transaction.atomic():
            if join_request_invited(join_request, decider=None, by=By(None)):
                join_after_commit(join_request)
    elif membership == "join":
        join_request_joined(join_request)
    else:
        # The main server's push of the knock may have moved the request on already.
        join_request_knocked(join_request)
        _after_knock(join_request)


def _after_knock(join_request: JoinRequest) -> None:
    join_request.refresh_from_db(fields=["status", "version", "decided_by"])
    link = join_request.invite_link
    if join_request.status == Status.WAITING and link is not None and link.pre_approved:
        join_request_approve(join_request, moderator=PRE_APPROVED)
    elif join_request.status == Status.CANCELLED:
        # The guest cancelled while the knock was on its way: take it back.
        withdraw_knock_after_commit(join_request)


def _ensure_knocked(join_request: JoinRequest, appservice: MatrixClient) -> str:
    """Knock as the guest; the membership on main afterwards (knock, invite, join or ban)."""
    room_id = join_request.room.room_id
    try:
        appservice.as_user(join_request.user_id).knock(room_id, via=via())
        return "knock"
    except HomeserverUnavailable as error:
        _knock_unavailable(error)
        raise
    except Forbidden:
        # Already knocking, already invited (a retry), or banned: the main server knows.
        with homeservers.main_bot() as bot:
            member = bot.member(room_id, join_request.user_id)
        if member is None or member.membership not in ("knock", "invite", "join", "ban"):
            raise
        return member.membership


def _knock_unavailable(error: HomeserverUnavailable) -> None:
    """A knock failed for now: usually the guest homeserver could not reach main (502
    "Failed to make_knock via any server"). While main is away, say so (the guest's message
    when GuestGate gives up). Once main answers GuestGate again, the guest homeserver may still
    refuse to try it for a while (Synapse's federation backoff): reset that, so that the task's
    next attempt, and the guest's "Try again", reach main at once. Costs two requests, on a
    failed knock only."""
    if not homeservers.main_answers():
        raise MainUnreachable(
            f"the call's server does not answer ({error.message})",
            status=error.status,
            errcode=error.errcode,
            endpoint=error.endpoint,
        ) from error
    homeservers.guest_server_retry_main_now()


def join_request_cancel(join_request: JoinRequest) -> bool:
    """The guest gives up waiting; their knock is taken back on the main server too."""
    with transaction.atomic():
        if not join_request_cancelled(join_request, via_guestgate=True):
            return False
        withdraw_knock_after_commit(join_request)
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


def join_request_retry(join_request: JoinRequest) -> bool:
    """Start a failed request over; the steps already done are not repeated."""
    try:
        with transaction.atomic():
            if not join_request_restarted(join_request):
                return False
            _provision_after_commit(join_request)
    except IntegrityError:  # another request of this guest for this room is already open
        return False
    return True


def _provision_after_commit(join_request: JoinRequest) -> None:
    pk = join_request.pk
    send_after_commit(provision_join_request, pk)


def withdraw_knock_after_commit(join_request: JoinRequest) -> None:
    pk = join_request.pk
    send_after_commit(withdraw_knock, pk)


@shared_task(bind=True, max_retries=8)
def provision_join_request(self: Task, join_request_id: int) -> None:
    guest_step_run(self, join_request_id, join_request_provision)


@shared_task(bind=True, max_retries=8)
def withdraw_knock(self: Task, join_request_id: int) -> None:
    join_request = join_request_load(join_request_id)
    if join_request is None:
        return
    run_retrying(
        self,
        lambda: join_request_withdraw_knock(join_request),
        on_give_up=lambda error: None,  # logged; the expiry sweep kicks stale knocks again
    )


@shared_task
def requeue_stuck_join_requests() -> int:
    """The database is the record of work: re-send tasks for requests stuck mid-flight (a lost
    message, a worker killed before it could retry). Safe: every task is idempotent."""
    stuck_before = timezone.now() - timedelta(minutes=2)
    stuck = JoinRequest.objects.filter(updated_at__lt=stuck_before)
    provisioning = list(stuck.filter(status=Status.PROVISIONING).values_list("pk", flat=True))
    joining = list(
        stuck.filter(status__in=[Status.INVITED, Status.JOINING]).values_list("pk", flat=True)
    )
    for pk in provisioning:
        provision_join_request.delay(pk)
    for pk in joining:
        join_guest.delay(pk)
    # Claimed by a moderator (or "let everyone in") but never invited: the web request or the
    # message that was to invite them was lost.
    claimed = list(
        stuck.filter(status=Status.WAITING).exclude(decided_by="").values_list("pk", "decided_by")
    )
    for pk, moderator in claimed:
        approve_claimed.delay(pk, moderator)
    # Removed, but the bot has not ended their call memberships on main yet.
    removed = list(call_members_clear_due(timezone.now()).filter(updated_at__lt=stuck_before))
    for join_request in removed:
        clear_call_members.delay(join_request.pk)
    return len(provisioning) + len(joining) + len(claimed) + len(removed)
