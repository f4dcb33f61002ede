from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy

from accounts.displaynames import CleanName, DisplayNameRejected, clean_display_name


class JoinForm(forms.Form):
    """The one field a guest fills in. Cleaning follows accounts.displaynames."""

    display_name = forms.CharField(
        label=gettext_lazy("Your name"),
        help_text=gettext_lazy("Others in the call will see this name, marked as a guest."),
        max_length=200,  # generous: the real limit applies after cleaning
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
