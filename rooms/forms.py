from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy

from accounts.displaynames import CleanName, DisplayNameRejected, clean_display_name


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
