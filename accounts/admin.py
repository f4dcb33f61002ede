from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Field, Q, QuerySet
from django.http import HttpRequest

from accounts.models import GuestAccount, RetentionPolicy
from accounts.selectors import accounts_due_count


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "is_default",
        "account_lifetime",
        "idle_timeout",
        "left_call_timeout",
        "erase_on_expiry",
        "return_window",
        "record_retention",
        "live_accounts",
    ]

    #: Fields saved as typed: the suffix's leading space parts it from the name ("Ida (Guest)").
    KEEP_SPACES = ("displayname_suffix",)

    def formfield_for_dbfield(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name in self.KEEP_SPACES:
            kwargs["strip"] = False
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RetentionPolicy]:
        return (
            super()
            .get_queryset(request)
            .annotate(live=Count("accounts", filter=Q(accounts__status__in=["pending", "active"])))
        )

    @admin.display(description="live accounts", ordering="live")
    def live_accounts(self, policy: RetentionPolicy) -> int:
        return int(getattr(policy, "live", 0))

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        live = obj.accounts.filter(status__in=["pending", "active"]).count()
        due = accounts_due_count(obj)
        messages.info(
            request,
            f"This policy applies to {live} live guest account"
            f"{'s' if live != 1 else ''}; {due} of them expire at the next "
            "sweep (within a minute).",
        )


@admin.register(GuestAccount)
class GuestAccountAdmin(admin.ModelAdmin):
    list_display = ["user_id", "display_name", "status", "policy", "created_at", "expired_at"]
    list_filter = ["status", "policy"]
    search_fields = ["user_id", "display_name"]
    exclude = ["access_token_encrypted", "browser_key_hash"]
    readonly_fields = [
        "localpart",
        "user_id",
        "registered_at",
        "device_id",
        "created_at",
        "last_seen_at",
        "expiring_since",
        "expiry_started_at",
        "expiry_claim",
        "deactivated_at",
        "expired_at",
        "expiry_reason",
    ]
