from __future__ import annotations

from django.db import models


class AppserviceTransaction(models.Model):
    """A transaction the main homeserver pushed to GuestGate's appservice endpoint.

    The unique ``txn_id`` makes delivery exactly-once on our side: the homeserver retries a
    transaction until it gets a 200, and a retry must change nothing.
    """

    txn_id = models.CharField(max_length=255, unique=True)
    event_count = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"transaction {self.txn_id} ({self.event_count} events)"


class MembershipEvent(models.Model):
    """An ``m.room.member`` event in a room where GuestGate's bot is joined, as pushed by main.

    This is the log GuestGate follows to learn about knocks, invites, joins, kicks and bans,
    whoever made them (GuestGate's buttons or any Matrix client).
    """

    event_id = models.CharField(max_length=255, unique=True)
    room_id = models.CharField(max_length=255)
    user_id = models.CharField(max_length=255)  # the state_key: whose membership changed
    sender = models.CharField(max_length=255)
    membership = models.CharField(max_length=16)
    prev_membership = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    displayname = models.CharField(max_length=255, blank=True)
    origin_server_ts = models.BigIntegerField(null=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["room_id", "user_id", "-origin_server_ts"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.membership} in {self.room_id}"
