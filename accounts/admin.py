from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, DurationField, Field, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import format_lazy

from accounts.models import GUEST_SUFFIXES, GuestAccount, RetentionPolicy
from accounts.selectors import accounts_due_count
from guestgate.durations import FORMAT_HINT, ShortDurationField, duration_short


class SuffixInput(forms.TextInput):
    """The guest suffix as typed, with the usual ones offered (" (Guest)", " (Gast)", …)."""

    def __init__(self) -> None:
        super().__init__(attrs={"list": "guest-suffixes"})

    def render(self, *args: Any, **kwargs: Any) -> SafeString:
        options = format_html_join(
            "", '<option value="{}">{}</option>', ((value, name) for value, name in GUEST_SUFFIXES)
        )
        return format_html(
            '{}<datalist id="guest-suffixes">{}</datalist>',
            super().render(*args, **kwargs),
            options,
        )


def _short(field: str, title: str) -> Callable[[RetentionPolicy], str]:
    """A list column showing a duration as people type it ("1d 12h"); empty as "-"."""

    @admin.display(description=title, ordering=field)
    def column(policy: RetentionPolicy) -> str:
        value = getattr(policy, field)
        return duration_short(value) if isinstance(value, timedelta) else "-"

    return column


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "is_default",
        _short("account_lifetime", "account lifetime"),
        _short("idle_timeout", "idle timeout"),
        _short("left_call_timeout", "left call timeout"),
        "erase_on_expiry",
        _short("return_window", "return window"),
        _short("record_retention", "record retention"),
        "displayname_suffix",
        "live_accounts",
    ]

    #: Fields saved as typed: the suffix's leading space parts it from the name ("Ida (Guest)").
    KEEP_SPACES = ("displayname_suffix",)

    def formfield_for_dbfield(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name in self.KEEP_SPACES:
            kwargs["strip"] = False
        if db_field.name == "displayname_suffix":
            kwargs["widget"] = SuffixInput()
        if isinstance(db_field, DurationField):
            # "2h", "1d 12h" as well as Django's "1 00:00:00"; shown back as "1d".
            kwargs["form_class"] = ShortDurationField
            kwargs["help_text"] = format_lazy("{} {}", db_field.help_text, FORMAT_HINT)
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
