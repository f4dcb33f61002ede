from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from matrix.types import PowerLevels


class AppserviceTransaction(models.Model):
    """A transaction the main homeserver pushed to GuestGate's appservice endpoint: a log of
    pushes (when main last pushed, how much).

    Not unique: a main homeserver on SQLite starts its transaction ids again at 1 after a
    restart, so an id seen before may carry new events. What must happen once is deduplicated
    by event id (``MembershipEvent``).
    """

    txn_id = models.CharField(max_length=255)
    event_count = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"transaction {self.txn_id} ({self.event_count} events)"


class MembershipEvent(models.Model):
    """An ``m.room.member`` event in a room where GuestGate's bot is joined, as pushed by main,
    a call member event of one of GuestGate's guests (``type``; ``rooms.calls``), or a
    moderator's reaction or command for the waiting notice (``rooms.notices``).

    This is the log GuestGate follows to learn about knocks, invites, joins, kicks and bans,
    whoever made them (GuestGate's buttons or any Matrix client), and who is in the call.
    """

    MEMBER = "m.room.member"

    event_id = models.CharField(max_length=255, unique=True)
    room_id = models.CharField(max_length=255)
    type = models.CharField(max_length=64, default=MEMBER)
    user_id = models.CharField(max_length=255)  # the state_key: whose membership changed
    sender = models.CharField(max_length=255)
    membership = models.CharField(max_length=16)
    prev_membership = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    displayname = models.CharField(max_length=255, blank=True)
    origin_server_ts = models.BigIntegerField(null=True)
    # A call member event, as read when it arrived (rooms.calls): {"devices": [{"device_id",
    # "in_call", "expires_ts"}], "every_device": bool}. Empty for membership events.
    call_state = models.JSONField(default=dict, blank=True)
    # A moderator's reaction to the waiting notice (``m.reaction``: the notice it relates to
    # and its key) or command (``m.room.message``: the event it replies to, and its text),
    # for rooms.notices.
    relates_to = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # Applied (rooms.membership) once, in the order received; a failure is retried a few times,
    # then left unapplied with its error for an operator (/healthz, /metrics, doctor).
    applied_at = models.DateTimeField(null=True, blank=True)
    apply_attempts = models.PositiveSmallIntegerField(default=0)
    apply_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["room_id", "user_id", "-origin_server_ts"]),
            models.Index(
                fields=["id"],
                condition=models.Q(applied_at__isnull=True),
                name="membership_event_unapplied",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.membership} in {self.room_id}"


class CallRoom(models.Model):
    """A room of the main homeserver that guests may knock on, with GuestGate's bot in it."""

    class Status(models.TextChoices):
        READY = "ready", gettext_lazy("ready for guests")
        PROBLEM = "problem", gettext_lazy("needs attention")

    room_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    problems = models.JSONField(default=list, blank=True)  # codes and values: rooms.messages
    # Names and ids of the room's moderators, which guests may not imitate.
    protected_names = models.JSONField(default=list, blank=True)
    # The room's m.room.power_levels content as last seen (pushes keep it current), and the
    # creators who outrank every level in room version 12 and later.
    power_levels = models.JSONField(default=dict, blank=True)
    creators = models.JSONField(default=list, blank=True)
    retention_policy = models.ForeignKey(
        "accounts.RetentionPolicy",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty: the default policy.",
    )
    registered_by = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField()
    # The last time main's member state showed changes main never pushed (rooms.membership):
    # how many were taken from main's state, and how late the oldest was.
    push_gap_at = models.DateTimeField(null=True, blank=True)
    push_gap_events = models.PositiveIntegerField(default=0)
    push_gap_seconds = models.PositiveIntegerField(default=0)
    # Where the bot posts the waiting notice (rooms.notices): another Matrix room the room's
    # admins chose, e.g. their moderators' room; empty: the call room itself.
    notice_room_id = models.CharField(max_length=255, blank=True)
    # The language of the waiting notice and of the bot's answers there (a code of
    # settings.LANGUAGES); empty: the site's language.
    notice_language = models.CharField(max_length=16, blank=True)
    # Whether the room has m.room.encryption (its check, and main's pushes): the lobby then
    # runs the call with end-to-end encryption (frontend/call-host.js) and its policy lets the
    # crypto's WebAssembly run (ops.security.lobby_policy).
    encrypted = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name or self.room_id

    @property
    def notice_room(self) -> str:
        """The Matrix room of the waiting notice."""
        return self.notice_room_id or self.room_id

    @property
    def display_name(self) -> str:
        return self.name or gettext("a call")

    @property
    def levels(self) -> PowerLevels:
        return PowerLevels.from_content(self.power_levels or None, creators=self.creators)


class InviteLink(models.Model):
    """A link (and QR code) through which guests come to a call room.

    Guests are found by the SHA-256 of the token; the token itself is kept only encrypted
    (guestgate.crypto), so its moderators can show the link again (rooms.invite_links).
    """

    room = models.ForeignKey(CallRoom, on_delete=models.CASCADE, related_name="invite_links")
    token_hash = models.CharField(max_length=64, unique=True)
    token_encrypted = models.TextField(blank=True)  # empty: made before tokens were kept
    label = models.CharField(max_length=100, blank=True)
    pre_approved = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Who revoked it (as in the audit log): they, or the room's admins, may undo it a while.
    revoked_by = models.CharField(max_length=255, blank=True)
    created_by = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    retention_policy = models.ForeignKey(
        "accounts.RetentionPolicy",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty: the room's policy.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True)
                | models.Q(use_count__lte=models.F("max_uses")),
                name="invite_link_uses_within_limit",
            )
        ]

    def __str__(self) -> str:
        return self.label or gettext("unlabelled link #%(number)s") % {"number": self.pk}


class JoinRequest(models.Model):
    """One guest's way into one call room: account, knock, the decision, the join.

    ``status`` is the only state; every change is a conditional UPDATE that also bumps
    ``version``, which the lobby page long-polls on.
    """

    class Status(models.TextChoices):
        PROVISIONING = "provisioning", gettext_lazy("creating your account")
        WAITING = "waiting", gettext_lazy("waiting for a moderator")
        INVITED = "invited", gettext_lazy("let in")
        JOINING = "joining", gettext_lazy("joining")
        JOINED = "joined", gettext_lazy("in the call")
        DENIED = "denied", gettext_lazy("denied")
        BANNED = "banned", gettext_lazy("denied and banned")
        CANCELLED = "cancelled", gettext_lazy("cancelled")
        FAILED = "failed", gettext_lazy("failed")
        EXPIRED = "expired", gettext_lazy("expired")
        REMOVED = "removed", gettext_lazy("removed from the call")

    OPEN = (Status.PROVISIONING, Status.WAITING, Status.INVITED, Status.JOINING)

    public_id = models.UUIDField(unique=True)  # in the lobby URL; reveals nothing
    room = models.ForeignKey(CallRoom, on_delete=models.CASCADE, related_name="join_requests")
    guest = models.ForeignKey(
        "accounts.GuestAccount",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="join_requests",
    )
    invite_link = models.ForeignKey(
        InviteLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="join_requests"
    )
    user_id = models.CharField(max_length=255)
    display_name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.TextField(blank=True)  # the moderator's words, or reason_code's values
    # GuestGate's own words to the guest (rooms.messages), shown in the guest's language.
    reason_code = models.CharField(max_length=32, blank=True)
    decided_by = models.CharField(max_length=255, blank=True)
    # decided_by's decision was made in a Matrix client (rooms.notices): whichever path then
    # records it (the approval task, main's push of the bot's invite) audits it "in Matrix".
    decided_in_matrix = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=1)
    # A moderator's line to the guest while they wait ("We start at 10:05", rooms.announcements),
    # shown in the lobby as typed; setting it bumps ``version`` so the lobby's long poll hears it.
    announcement = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # homeserver retries so far
    # A removed guest's call memberships on main overwritten with {} by the bot (rooms.calls):
    # until then Element Call clients may still list them. Null while that is still to do.
    call_cleared_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user_id"],
                condition=models.Q(status__in=["provisioning", "waiting", "invited", "joining"]),
                name="one_open_join_request_per_user_and_room",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.room} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    @property
    def call(self) -> CallStatus:
        """Whether the guest is in the call now (prefetch ``call_presences`` for lists)."""
        return CallStatus.of(list(self.call_presences.all()), timezone.now())


class CallPresence(models.Model):
    """One device of a guest in a room's call (MatrixRTC), as main's call member events say:
    when it joined the call, when it left (``rooms.calls`` keeps it current)."""

    join_request = models.ForeignKey(
        JoinRequest, on_delete=models.CASCADE, related_name="call_presences"
    )
    device_id = models.CharField(max_length=255)
    joined_at = models.DateTimeField(null=True, blank=True)  # this stretch in the call began
    left_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # in the call until, unless renewed
    # The newest event applied: an older one arriving late changes nothing.
    event_ts = models.BigIntegerField(null=True, blank=True)
    event_id = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["join_request", "device_id"], name="one_call_presence_per_device"
            )
        ]

    def __str__(self) -> str:
        return f"{self.device_id} of {self.join_request_id}"

    def in_call_at(self, moment: datetime) -> bool:
        return (
            self.joined_at is not None
            and self.left_at is None
            and (self.expires_at is None or self.expires_at > moment)
        )

    def left_at_or_ran_out(self) -> datetime | None:
        """When it left the call; a membership that ran out left when it ran out."""
        return self.left_at or self.expires_at


@dataclass(frozen=True)
class CallStatus:
    """A guest in the call, having left it (``since``: when the last device left), or not
    joined it yet."""

    IN_CALL = "in_call"
    LEFT = "left"
    NOT_JOINED = "not_joined"

    state: str
    since: datetime | None = None

    @classmethod
    def of(cls, presences: list[CallPresence], now: datetime) -> CallStatus:
        joined = [p for p in presences if p.joined_at is not None]
        in_call = [p for p in joined if p.in_call_at(now)]
        if in_call:
            return cls(cls.IN_CALL, min(p.joined_at for p in in_call if p.joined_at))
        left = [moment for p in joined if (moment := p.left_at_or_ran_out()) is not None]
        if left:
            return cls(cls.LEFT, max(left))
        return cls(cls.NOT_JOINED)


class AuditEntry(models.Model):
    """Who knocked, who decided what and when, with the reason: one row per thing that happened.

    Written in the same transaction as the change it records.
    """

    class Action(models.TextChoices):
        KNOCKED = "knocked", gettext_lazy("asked to join")
        APPROVED = "approved", gettext_lazy("let in")
        DENIED = "denied", gettext_lazy("denied")
        BANNED = "banned", gettext_lazy("denied and banned")
        # A ban taken back moments after it was made (rooms.moderation): denied, not banned.
        BAN_UNDONE = "ban_undone", gettext_lazy("ban undone")
        JOINED = "joined", gettext_lazy("joined")
        CANCELLED = "cancelled", gettext_lazy("cancelled")
        FAILED = "failed", gettext_lazy("failed")
        EXPIRED = "expired", gettext_lazy("expired")
        REMOVED = "removed", gettext_lazy("removed from the call")
        # The bot ended a removed guest's call memberships on main (rooms.calls).
        CALL_CLEARED = "call_cleared", gettext_lazy("taken out of the call on Matrix")
        # A moderator's message to a waiting guest (rooms.announcements); ``reason``: the text.
        MESSAGED = "messaged", gettext_lazy("wrote to the waiting guest")
        # Changes to the room and its links (no guest: ``subject_name`` names the link or the
        # room; ``reason`` holds the policies' names, "old → new").
        LINK_REVOKED = "link_revoked", gettext_lazy("invite link revoked")
        LINK_RESTORED = "link_restored", gettext_lazy("revoking the invite link undone")
        POLICY_CHANGED = "policy_changed", gettext_lazy("retention policy changed")

    room = models.ForeignKey(CallRoom, on_delete=models.CASCADE, related_name="audit_entries")
    join_request = models.ForeignKey(
        JoinRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit"
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.CharField(max_length=255)  # a Matrix id, or "GuestGate"
    # The Matrix id of the person knocking; empty for a change to a link or the room.
    subject = models.CharField(max_length=255, blank=True)
    subject_name = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    via_guestgate = models.BooleanField(default=True)  # False: decided in a Matrix client

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["room", "-at"])]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.subject}"


class WaitingNotice(models.Model):
    """The one message GuestGate's bot keeps in a call room while guests wait (rooms.notices):
    who is waiting, numbered, edited as the queue changes and closed when it empties.

    ``event_id`` is the open notice ("" when none is open: the next guest starts a new one).
    ``guests`` is what it shows, ``[[number, join_request_pk], ...]``: a guest keeps their
    number for the notice's life, so a reaction or command never reaches another guest.
    """

    room = models.OneToOneField(CallRoom, on_delete=models.CASCADE, related_name="waiting_notice")
    event_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The Matrix room the open notice is in (the call room's notice room when it was sent).
    in_room = models.CharField(max_length=255, blank=True)
    # The transaction id of the notice being started: sent again after a crash, main answers
    # with the same event instead of a second notice.
    txn_id = models.CharField(max_length=64, blank=True)
    guests = models.JSONField(default=list, blank=True)
    # When main says the open notice was sent (its origin_server_ts, in ms): a command sent
    # before it answered an earlier notice, whose numbers are not this one's.
    opened_ts = models.BigIntegerField(default=0)
    # The sha256 of the open notice's text as last sent or edited: another language, room name
    # or moderators' room neighbours change the text without changing its guests.
    digest = models.CharField(max_length=64, blank=True)
    edits = models.PositiveIntegerField(default=0)  # of the open notice (its edits' txn ids)
    sent_at = models.DateTimeField(null=True, blank=True)  # the last send or edit
    # The queue changed and a refresh is queued (coalescing: one refresh for many changes).
    due_at = models.DateTimeField(null=True, blank=True)
    # A refresh is running until then (two at once would both start a notice).
    busy_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"waiting notice of {self.room} ({self.event_id or 'none open'})"
