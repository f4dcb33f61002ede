from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from accounts.displaynames import CleanName, DisplayNameRejected, clean_display_name
from accounts.models import RetentionPolicy
from guestgate.durations import ShortDurationField, duration_short


class TypedNameField(forms.CharField):
    """A name as typed, handed to accounts.displaynames whole: it removes NUL like any other
    control character and says "too long" in one message at any length, where CharField's
    own checks (no NUL, ``max_length``) would refuse first, in other words."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = []


class JoinForm(forms.Form):
    """The one field a guest fills in. Cleaning follows accounts.displaynames."""

    display_name = TypedNameField(
        label=gettext_lazy("Your name"),
        help_text=gettext_lazy("Others in the call will see this name, marked as a guest."),
        widget=forms.TextInput(attrs={"autocomplete": "name", "autofocus": True}),
    )

    def __init__(self, *args: Any, protected_names: list[str], suffix: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protected_names = protected_names
        self.suffix = suffix

    def clean_display_name(self) -> CleanName:
        try:
            return clean_display_name(
                self.cleaned_data["display_name"],
                suffix=self.suffix,
                protected_names=self.protected_names,
            )
        except DisplayNameRejected as rejected:
            raise forms.ValidationError(rejected.message, code=rejected.code) from None


def _default_policy() -> RetentionPolicy:
    return RetentionPolicy.objects.filter(is_default=True).first() or RetentionPolicy(name="-")


class PolicyChoiceField(forms.ModelChoiceField):
    """Policies by name, with what a moderator chooses them for: the mark on guests' names and
    how long their accounts last, short enough for a phone ("Deutsch: “(Gast)”, 1d")."""

    def label_from_instance(self, obj: RetentionPolicy) -> str:
        return gettext("%(policy)s: “%(suffix)s”, %(lifetime)s") % {
            "policy": obj,
            "suffix": obj.displayname_suffix.strip(),
            "lifetime": duration_short(obj.account_lifetime),
        }


def _policy_field(*, empty_label: str, help_text: str) -> PolicyChoiceField:
    return PolicyChoiceField(
        queryset=RetentionPolicy.objects.order_by("-is_default", "name"),
        required=False,
        label=gettext_lazy("Retention policy"),
        empty_label=empty_label,
        help_text=help_text,
    )


UTC = ZoneInfo("UTC")


def viewer_time_zone(name: str) -> ZoneInfo:
    """The time zone a browser said it is in (an IANA name, e.g. "Europe/Berlin"); UTC when it
    said nothing or something zoneinfo does not know."""
    name = name.strip()
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class NewLinkForm(forms.Form):
    """A new invite link: its expiry as a duration ("2h", "1d") or a date and time."""

    label = forms.CharField(
        label=gettext_lazy("Label"),
        max_length=100,
        required=False,
        help_text=gettext_lazy("For you: where the link is used, e.g. “Poster at reception”."),
    )
    expires_in = ShortDurationField(
        label=gettext_lazy("Expires after"),
        required=False,
        min_value=timedelta(minutes=1),
        max_value=timedelta(days=366),
        help_text=gettext_lazy(
            "For example 2h, 90m, 1d 12h or 1w. Or give a date and time below. "
            "Leave both empty for a link that does not expire."
        ),
    )
    expires_at = forms.DateTimeField(
        label=gettext_lazy("…or expires on"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        help_text=gettext_lazy(
            "In your time zone (UTC when your browser does not say which). The link's page "
            "confirms the moment."
        ),
    )
    # The browser's time zone (static/guestgate/timezone.js fills it); empty, unknown or too
    # long: UTC (never an error: the field is hidden, nobody could mend it).
    time_zone = forms.CharField(
        required=False, widget=forms.HiddenInput(attrs={"data-time-zone": ""})
    )
    max_uses = forms.IntegerField(
        label=gettext_lazy("Maximum number of guests"),
        required=False,
        min_value=1,
        max_value=100_000,
        help_text=gettext_lazy("Leave empty for no limit."),
    )
    pre_approved = forms.BooleanField(
        label=gettext_lazy("Let guests in without a moderator"),
        required=False,
        help_text=gettext_lazy("Guests coming through this link skip the waiting room."),
    )

    def __init__(self, *args: Any, room_policy: RetentionPolicy | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["retention_policy"] = _policy_field(
            empty_label=gettext("The room's policy (%(policy)s)")
            % {"policy": (room_policy or _default_policy()).name},
            help_text=gettext("How long guests' accounts last, and the mark added to their names."),
        )

    def clean_time_zone(self) -> ZoneInfo:
        return viewer_time_zone(self.cleaned_data.get("time_zone", ""))

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        expires_in, expires_at = cleaned.get("expires_in"), cleaned.get("expires_at")
        if expires_at is not None:  # read as typed where the moderator is, not in UTC
            zone = cleaned.get("time_zone") or UTC
            typed = timezone.make_naive(expires_at, timezone.get_current_timezone())
            cleaned["expires_at"] = expires_at = timezone.make_aware(typed, zone)
        if expires_in and expires_at:
            self.add_error(
                "expires_at", gettext("Give either a duration or a date and time, not both.")
            )
        elif expires_at is not None and expires_at <= timezone.now():
            self.add_error("expires_at", gettext("That moment has passed already."))
        return cleaned

    @property
    def expiry(self) -> datetime | None:
        """When the new link stops working (after cleaning)."""
        expires_in = self.cleaned_data.get("expires_in")
        if expires_in:
            return timezone.now() + expires_in
        expires_at: datetime | None = self.cleaned_data.get("expires_at")
        return expires_at


class LinkPolicyForm(forms.Form):
    """A link's retention policy, changed after it is made."""

    def __init__(self, *args: Any, room_policy: RetentionPolicy | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["retention_policy"] = _policy_field(
            empty_label=gettext("The room's policy (%(policy)s)")
            % {"policy": (room_policy or _default_policy()).name},
            help_text=gettext(
                "For guests who come through this link: how long their accounts last, and the "
                "mark added to their names. A change applies at the next sweep (within a minute)."
            ),
        )


#: Longest room name and topic GuestGate sends to main (a name is shown in every client's list).
ROOM_NAME_MAX = 100
ROOM_TOPIC_MAX = 500


class NewRoomForm(forms.Form):
    """A new call room, made on main by GuestGate's bot."""

    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=ROOM_NAME_MAX,
        help_text=gettext_lazy("Guests see it on the invitation, e.g. “Team meeting”."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        error_messages={"required": gettext_lazy("Give the room a name.")},
    )
    topic = forms.CharField(
        label=gettext_lazy("Topic (optional)"),
        max_length=ROOM_TOPIC_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
            raise forms.ValidationError(
                gettext("A name cannot hold control or invisible characters."), code="invisible"
            )
        return name


class RoomSettingsForm(forms.Form):
    """What a room's admins choose for the room."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["retention_policy"] = _policy_field(
            empty_label=gettext("The default policy (%(policy)s)")
            % {"policy": _default_policy().name},
            help_text=gettext(
                "How long the accounts of guests of this room last, and the mark added to their "
                "names. A link may name a policy of its own."
            ),
        )
        self.fields["notice_room"] = forms.CharField(
            label=gettext("Room for the waiting notice (optional)"),
            max_length=255,
            required=False,
            help_text=gettext(
                "GuestGate's bot posts who is waiting in the call room. To have it post in "
                "another room instead, e.g. your moderators' room, give that room's id (!…) or "
                "address (#…): the bot joins it when you save, so invite it first to a closed "
                "room. Reactions and commands there act with people's rights in the call room. "
                "Several call rooms may post in the same moderators' room."
            ),
        )
        site = dict(settings.LANGUAGES).get(settings.LANGUAGE_CODE, settings.LANGUAGE_CODE)
        self.fields["notice_language"] = forms.ChoiceField(
            label=gettext("Language of the waiting notice"),
            choices=[
                ("", gettext("The site's language (%(language)s)") % {"language": site}),
                *settings.LANGUAGES,
            ],
            required=False,
            help_text=gettext(
                "The language of the bot's notice and of its answers to reactions and commands."
            ),
        )
