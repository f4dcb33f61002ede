from __future__ import annotations

from django.db import models


class GuestAccount(models.Model):
    """A temporary account on the guest homeserver, in GuestGate's appservice namespace.

    The row is written before the account exists on the homeserver (record, act, record), so
    an account can never be registered without GuestGate knowing of it. The provisioning steps
    are idempotent and each one's completion is recorded in its own field.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "being created"
        ACTIVE = "active", "active"
        EXPIRED = "expired", "expired"
        FAILED = "failed", "could not be created"

    localpart = models.CharField(max_length=64, unique=True)
    user_id = models.CharField(max_length=255, unique=True)
    display_name = models.CharField(max_length=255)  # on Matrix, with the guest suffix
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    registered_at = models.DateTimeField(null=True, blank=True)
    device_id = models.CharField(max_length=64, blank=True)
    access_token_encrypted = models.TextField(blank=True)  # guestgate.crypto; never logged
    # A returning guest's browser holds the key; only its hash is kept.
    browser_key_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return self.user_id
