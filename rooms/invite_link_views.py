"""Moderators' pages for invite links: list, create (token shown once), revoke, QR, poster.

A link's token is known only when it is made; to draw its QR code or poster again the
moderator's page sends the token back in a POST body (never in a URL, so never in a log),
and it is checked against the stored hash.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from rooms.invite_links import (
    grouped,
    invite_link_create,
    invite_link_revoke,
    invite_link_token_matches,
    invite_url,
)
from rooms.models import CallRoom, InviteLink
from rooms.permissions import actor_name, room_for
from rooms.qr_codes import qr_png, qr_svg
from rooms.selectors import room_invite_links


class NewLinkForm(forms.Form):
    label = forms.CharField(
        label=gettext_lazy("Label"),
        max_length=100,
        required=False,
        help_text=gettext_lazy("For you: where the link is used, e.g. “Poster at reception”."),
    )
    expires_in_hours = forms.IntegerField(
        label=gettext_lazy("Expires after (hours)"),
        required=False,
        min_value=1,
        max_value=24 * 365,
        help_text=gettext_lazy("Leave empty for a link that does not expire."),
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


def _links_room(request: HttpRequest, pk: int) -> CallRoom:
    room, rights = room_for(request, pk)
    if not rights.approve:
        raise Http404("invite links need the power to invite")
    return room


@login_required
@require_http_methods(["GET", "POST"])
def links(request: HttpRequest, pk: int) -> HttpResponse:
    room = _links_room(request, pk)
    form = NewLinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        hours = form.cleaned_data["expires_in_hours"]
        new = invite_link_create(
            room=room,
            created_by=actor_name(request.user),
            label=form.cleaned_data["label"],
            pre_approved=form.cleaned_data["pre_approved"],
            max_uses=form.cleaned_data["max_uses"],
            expires_at=timezone.now() + timedelta(hours=hours) if hours else None,
        )
        url = invite_url(new.token)
        return render(
            request,
            "moderator/new_link.html",
            {
                "room": room,
                "link": new.link,
                "token": new.token,
                "url": url,
                "grouped": grouped(new.token),
                "qr": qr_svg(url),
            },
        )
    return render(
        request,
        "moderator/links.html",
        {
            "room": room,
            "form": form,
            "links": room_invite_links(room),
        },
        status=400 if form.errors else 200,
    )


def _own_link(request: HttpRequest, pk: int) -> InviteLink:
    link = get_object_or_404(InviteLink.objects.select_related("room"), pk=pk)
    _links_room(request, link.room_id)
    return link


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    link = _own_link(request, pk)
    if invite_link_revoke(link):
        messages.success(request, gettext("“%(link)s” no longer works.") % {"link": link})
    return redirect("moderator-links", pk=link.room_id)


def _token_checked(request: HttpRequest, link: InviteLink) -> str:
    token = request.POST.get("token", "")
    if not invite_link_token_matches(link, token):
        raise Http404("wrong token for this link")
    return token


@login_required
@require_POST
def qr(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    if kind not in ("png", "svg"):
        raise Http404("QR codes come as png or svg")
    link = _own_link(request, pk)
    url = invite_url(_token_checked(request, link))
    name = f"guestgate-invite-{link.pk}.{kind}"
    if kind == "png":
        response = HttpResponse(qr_png(url), content_type="image/png")
    else:
        response = HttpResponse(qr_svg(url), content_type="image/svg+xml")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def poster(request: HttpRequest, pk: int) -> HttpResponse:
    link = _own_link(request, pk)
    token = _token_checked(request, link)
    url = invite_url(token)
    response = render(
        request,
        "moderator/poster.html",
        {
            "room": link.room,
            "url": url,
            "qr": qr_svg(url),
            "grouped": grouped(token),
            "instructions": request.POST.get("instructions", "")[:300],
            "short_url": url.split("://", 1)[-1],
        },
    )
    response["Cache-Control"] = "no-store"
    return response
