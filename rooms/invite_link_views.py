"""Moderators' pages for invite links: list, create, show again, revoke (confirmed, with a short
undo), QR code and poster.

A link's address, QR code and poster can be shown again at any time from its own page: the
token is kept encrypted (rooms.invite_links) and never travels in a URL of these pages, so it
is never in an access log. Every page that holds it says ``Cache-Control: no-store``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rooms.forms import NewLinkForm
from rooms.invite_links import (
    REVOKE_UNDO_WINDOW,
    grouped,
    invite_link_create,
    invite_link_restore,
    invite_link_revoke,
    invite_link_state,
    invite_link_token,
    invite_url,
)
from rooms.models import CallRoom, InviteLink
from rooms.permissions import actor_name, room_for
from rooms.qr_codes import qr_png, qr_svg
from rooms.selectors import room_invite_links

POSTER_TEXT_MAX = 300


def _links_room(request: HttpRequest, pk: int) -> CallRoom:
    room, rights = room_for(request, pk)
    if not rights.approve:
        raise Http404("invite links need the power to invite")
    return room


def _own_link(request: HttpRequest, pk: int) -> InviteLink:
    link = get_object_or_404(InviteLink.objects.select_related("room"), pk=pk)
    _links_room(request, link.room_id)
    return link


def _private(response: HttpResponse) -> HttpResponse:
    """A page holding a link's token: kept by no cache, the browser's included."""
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def links(request: HttpRequest, pk: int) -> HttpResponse:
    room = _links_room(request, pk)
    form = NewLinkForm(request.POST or None, room_policy=room.retention_policy)
    if request.method == "POST" and form.is_valid():
        new = invite_link_create(
            room=room,
            created_by=actor_name(request.user),
            label=form.cleaned_data["label"],
            pre_approved=form.cleaned_data["pre_approved"],
            max_uses=form.cleaned_data["max_uses"],
            expires_at=form.expiry,
            retention_policy=form.cleaned_data["retention_policy"],
        )
        messages.success(request, gettext("The link is made."))
        return redirect("moderator-link", pk=new.link.pk)
    summaries = room_invite_links(room)
    return render(
        request,
        "moderator/links.html",
        {
            "room": room,
            "form": form,
            "links": summaries,
            "just_revoked": [item.link for item in summaries if item.undo],
            "undo_seconds": int(REVOKE_UNDO_WINDOW.total_seconds()),
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_GET
def link(request: HttpRequest, pk: int) -> HttpResponse:
    """The link's address, QR code, downloads and poster: as often as its moderators like."""
    invite_link = _own_link(request, pk)
    token = invite_link_token(invite_link)
    context: dict[str, object] = {
        "room": invite_link.room,
        "link": invite_link,
        "state": invite_link_state(invite_link),
        "token_kept": token is not None,
    }
    if token is not None:
        url = invite_url(token)
        context |= {"url": url, "grouped": grouped(token), "qr": qr_svg(url)}
    return _private(render(request, "moderator/link.html", context))


@login_required
@require_http_methods(["GET", "POST"])
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: ask to confirm (works without JavaScript); POST: revoke, with a short undo."""
    invite_link = _own_link(request, pk)
    if request.method == "GET":
        return render(
            request,
            "moderator/revoke_link.html",
            {
                "room": invite_link.room,
                "link": invite_link,
                "state": invite_link_state(invite_link),
                "undo_seconds": int(REVOKE_UNDO_WINDOW.total_seconds()),
            },
        )
    invite_link_revoke(invite_link)  # the links page says so, with its "Undo" for a while
    return redirect("moderator-links", pk=invite_link.room_id)


@login_required
@require_POST
def restore(request: HttpRequest, pk: int) -> HttpResponse:
    """Undo a revocation made moments ago: the same link works again."""
    invite_link = _own_link(request, pk)
    if invite_link_restore(invite_link):
        messages.success(request, gettext("“%(link)s” works again.") % {"link": invite_link})
    else:
        messages.error(
            request,
            gettext("Too late to undo: “%(link)s” stays revoked. Make a new link instead.")
            % {"link": invite_link},
        )
    return redirect("moderator-links", pk=invite_link.room_id)


def _kept_token(invite_link: InviteLink) -> str:
    token = invite_link_token(invite_link)
    if token is None:
        raise Http404("this link's token was not kept; it cannot be shown again")
    return token


@login_required
@require_GET
def qr(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    if kind not in ("png", "svg"):
        raise Http404("QR codes come as png or svg")
    invite_link = _own_link(request, pk)
    url = invite_url(_kept_token(invite_link))
    name = f"guestgate-invite-{invite_link.pk}.{kind}"
    if kind == "png":
        response = HttpResponse(qr_png(url), content_type="image/png")
    else:
        response = HttpResponse(qr_svg(url), content_type="image/svg+xml")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return _private(response)


@login_required
@require_GET
def poster(request: HttpRequest, pk: int) -> HttpResponse:
    invite_link = _own_link(request, pk)
    token = _kept_token(invite_link)
    url = invite_url(token)
    return _private(
        render(
            request,
            "moderator/poster.html",
            {
                "room": invite_link.room,
                "url": url,
                "qr": qr_svg(url),
                "grouped": grouped(token),
                "instructions": request.GET.get("instructions", "")[:POSTER_TEXT_MAX],
                "short_url": url.split("://", 1)[-1],
            },
        )
    )
