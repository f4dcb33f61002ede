"""What every page's template may use besides the request: the organisation's branding."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse


@dataclass(frozen=True)
class PageBranding:
    name: str
    logo_url: str
    stylesheet_url: str


def branding(request: HttpRequest) -> dict[str, PageBranding]:
    """``branding.name``, ``branding.logo_url`` (may be empty) and ``branding.stylesheet_url``
    (the accent, ``/branding.css?v=…``) for the header, the titles and the poster."""
    configured = settings.BRANDING
    logo = static(configured.logo) if configured.logo_is_static else configured.logo
    return {
        "branding": PageBranding(
            name=configured.name,
            logo_url=logo,
            stylesheet_url=f"{reverse('branding-css')}?v={configured.version}",
        )
    }
