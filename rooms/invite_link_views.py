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

from rooms.forms import LinkPolicyForm, NewLinkForm
from rooms.invite_links import (
    REVOKE_UNDO_WINDOW,
    RevokeNotUndone,
    grouped,
    invite_link_create,
    invite_link_may_undo,
    invite_link_restore,
    invite_link_revoke,
    invite_link_set_policy,
    invite_link_state,
    invite_link_token,
    invite_url,
)
from rooms.models import CallRoom, InviteLink
from rooms.permissions import RoomRights, actor_name, room_for
from rooms.qr_codes import qr_png, qr_svg
from rooms.selectors import room_invite_links

POSTER_TEXT_MAX = 300


def _links_room(request: HttpRequest, pk: int) -> tuple[CallRoom, RoomRights]:
    room, rights = room_for(request, pk)
    if not rights.approve:
        raise Http404("invite links need the power to invite")
    return room, rights


def _own_link(request: HttpRequest, pk: int) -> InviteLink:
    return _own_link_and_rights(request, pk)[0]


def _own_link_and_rights(request: HttpRequest, pk: int) -> tuple[InviteLink, RoomRights]:
    link = get_object_or_404(
        InviteLink.objects.select_related("room", "room__retention_policy", "retention_policy"),
        pk=pk,
    )
    return link, _links_room(request, link.room_id)[1]


def _made(form: NewLinkForm) -> str:
    """ "The link is made", with the moment it expires as the moderator typed it, in the time
    zone it was read in (their browser's, or UTC), so a fallback to UTC never goes unseen."""
    expires_at = form.cleaned_data["expires_at"]
    if expires_at is None:
        return gettext("The link is made.")
    zone = form.cleaned_data["time_zone"]
    return gettext("The link is made. It expires on %(when)s (%(zone)s time).") % {
        "when": expires_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "zone": zone.key,
    }


def _private(response: HttpResponse) -> HttpResponse:
    """A page holding a link's token: kept by no cache, the browser's included."""
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def links(request: HttpRequest, pk: int) -> HttpResponse:
    room, rights = _links_room(request, pk)
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
        messages.success(request, _made(form))
        return redirect("moderator-link", pk=new.link.pk)
    summaries = room_invite_links(room)
    actor = actor_name(request.user)
    return render(
        request,
        "moderator/links.html",
        {
            "room": room,
            "form": form,
            "links": summaries,
            "just_revoked": [
                (item.link, invite_link_may_undo(item.link, by=actor, room_admin=rights.admin))
                for item in summaries
                if item.undo
            ],
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
        "policy_form": LinkPolicyForm(
            initial={"retention_policy": invite_link.retention_policy},
            room_policy=invite_link.room.retention_policy,
        ),
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
    # The links page says so, with its "Undo" for a while.
    invite_link_revoke(invite_link, by=actor_name(request.user))
    return redirect("moderator-links", pk=invite_link.room_id)


@login_required
@require_POST
def restore(request: HttpRequest, pk: int) -> HttpResponse:
    """Undo a revocation made moments ago: the same link works again. Only who revoked it, or
    the room's admins, may."""
    invite_link, rights = _own_link_and_rights(request, pk)
    try:
        invite_link_restore(invite_link, by=actor_name(request.user), room_admin=rights.admin)
    except RevokeNotUndone as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, gettext("“%(link)s” works again.") % {"link": invite_link})
    return redirect("moderator-links", pk=invite_link.room_id)


@login_required
@require_POST
def link_policy(request: HttpRequest, pk: int) -> HttpResponse:
    """Change the retention policy of the link's guests (audited)."""
    invite_link = _own_link(request, pk)
    form = LinkPolicyForm(request.POST, room_policy=invite_link.room.retention_policy)
    if not form.is_valid():
        messages.error(request, " ".join(str(error) for error in form.errors["retention_policy"]))
    elif invite_link_set_policy(
        invite_link, form.cleaned_data["retention_policy"], by=actor_name(request.user)
    ):
        messages.success(request, gettext("The link's retention policy is changed."))
    return redirect("moderator-link", pk=invite_link.pk)


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
