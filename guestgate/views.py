from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext

from ops.health import check_homeserver


@dataclass(frozen=True)
class HomeserverHealth:
    role: str
    url: str
    reachable: bool
    detail: str


def homeserver_health(role: str, base_url: str) -> HomeserverHealth:
    """One row of the home page's table, from the homeserver check ``/healthz`` makes."""
    check = check_homeserver(base_url)
    return HomeserverHealth(role, base_url.rstrip("/"), check.ok, check.detail)


def home(request: HttpRequest) -> HttpResponse:
    """A start page that says whether GuestGate can reach both homeservers."""
    health = [
        homeserver_health(gettext("Guest homeserver"), settings.GUEST_HS_URL),
        homeserver_health(gettext("Main homeserver"), settings.MAIN_HS_URL),
    ]
    return render(request, "home.html", {"health": health})
