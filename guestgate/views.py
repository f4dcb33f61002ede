from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext

from guestgate import homeservers
from matrix import MatrixClient, MatrixError


@dataclass(frozen=True)
class HomeserverHealth:
    role: str
    url: str
    reachable: bool
    detail: str


def _health(role: str, client: MatrixClient) -> HomeserverHealth:
    with client:
        try:
            who = client.whoami()
        except MatrixError as exc:
            return HomeserverHealth(role, client.base_url, False, exc.message)
    return HomeserverHealth(
        role,
        client.base_url,
        True,
        gettext("appservice user %(user_id)s") % {"user_id": who.user_id},
    )


def home(request: HttpRequest) -> HttpResponse:
    """A start page that says whether GuestGate can reach both homeservers."""
    health = [
        _health(gettext("Guest homeserver"), homeservers.guest_appservice()),
        _health(gettext("Main homeserver"), homeservers.main_bot()),
    ]
    return render(request, "home.html", {"health": health})
