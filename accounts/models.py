from __future__ import annotations

from datetime import timedelta

from django.db import models

#: Guest suffixes offered to admins: a name others see in the call, so it is the policy's text,
#: in the language of the call's people, not of whoever reads the page. (The leading space
#: parts it from the guest's name: "Ida (Gast)".)
GUEST_SUFFIXES = [
    (" (Guest)", "English"),
    (" (Gast)", "Deutsch"),
]


class RetentionPolicy(models.Model):
    """How long guest accounts and GuestGate's records of them live.

    One policy is the default; a room or an invite link may name another. Changes apply to
    existing accounts at the next sweep (expiry is computed from the policy, not stored).
    """

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    account_lifetime = models.DurationField(
        default=timedelta(hours=24), help_text="Accounts expire this long after they were made."
    )
    idle_timeout = models.DurationField(
        null=True,
        blank=True,
        default=None,
        help_text="…or after this long without activity: the guest's lobby page open, or a "
        "membership change in the room. Empty: never. (A guest quietly in a call for longer "
        "with the lobby closed counts as idle.)",
    )
    left_call_timeout = models.DurationField(
        null=True,
        blank=True,
        default=None,
        help_text="…or this long after the guest left the call (every device of theirs) and "
        "did not come back. Empty: never.",
    )
    erase_on_expiry = models.BooleanField(
        default=True, help_text="Erase the display name and profile on the guest homeserver."
    )
    return_window = models.DurationField(
        default=timedelta(hours=12),
        help_text="A guest coming back with the same browser within this time keeps the account.",
    )
    record_retention = models.DurationField(
        default=timedelta(days=30),
        help_text="GuestGate keeps join requests and audit entries this long, then deletes them.",
    )
    displayname_suffix = models.CharField(
        max_length=32,
        blank=True,
        default=" (Guest)",
        help_text="Added to every guest's display name, others see it in the call: "
        'e.g. " (Guest)", or " (Gast)" for German-speaking calls.',
    )
    max_guests_per_room = models.PositiveIntegerField(
        null=True, blank=True, help_text="Guests at once in one room. Empty: no limit."
    )

    class Meta:
        verbose_name_plural = "retention policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_retention_policy",
            ),
            models.CheckConstraint(
                condition=models.Q(account_lifetime__gt=timedelta(0)),
                name="account_lifetime_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (default)" if self.is_default else self.name


class GuestAccount(models.Model):
    """A temporary account on the guest homeserver, in GuestGate's appservice namespace.

    The row is written before the account exists on the homeserver (record, act, record), so
    an account can never be registered without GuestGate knowing of it. The provisioning and
    expiry steps are idempotent and each one's completion is recorded in its own field.
    """

    class Status(models.TextChoices):
        SPARE = "spare", "spare (ready, not given to a guest yet)"
        PENDING = "pending", "being created"
        ACTIVE = "active", "active"
        EXPIRING = "expiring", "expiring"
        EXPIRED = "expired", "expired"
        FAILED = "failed", "could not be created"

    localpart = models.CharField(max_length=64, unique=True)
    user_id = models.CharField(max_length=255, unique=True)
    display_name = models.CharField(max_length=255)  # on Matrix, with the guest suffix
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    policy = models.ForeignKey(RetentionPolicy, on_delete=models.PROTECT, related_name="accounts")
    registered_at = models.DateTimeField(null=True, blank=True)
    device_id = models.CharField(max_length=64, blank=True)
    access_token_encrypted = models.TextField(blank=True)  # guestgate.crypto; never logged
    # A returning guest's browser holds the key; only its hash is kept.
    browser_key_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    expiring_since = models.DateTimeField(null=True, blank=True)  # claimed by a sweep
    expiry_started_at = models.DateTimeField(null=True, blank=True)  # its batch began
    expiry_claim = models.CharField(max_length=32, blank=True, db_index=True)
    # The batch expiring it now (its task id) holds it until then, renewed at every step: a
    # killed batch lets its accounts go soon (accounts/expiry.py).
    expiry_holder = models.CharField(max_length=64, blank=True)
    expiry_lease_until = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    expiry_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "policy", "created_at"])]

    def __str__(self) -> str:
        return self.user_id
