"""Moderators' pages for a room as a whole: a new call room in one step, the room's settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from guestgate.errors import GuestGateError
from matrix import MatrixError
from rooms.call_rooms import RoomNotCreated, call_room_create, call_room_set_policy
from rooms.forms import NewRoomForm, RoomSettingsForm
from rooms.invite_links import invite_link_create
from rooms.notices import notice_language_set, notice_room_set
from rooms.permissions import actor_name, matrix_id_of, may_create_call_rooms, room_for


@login_required
@require_http_methods(["GET", "POST"])
def room_new(request: HttpRequest) -> HttpResponse:
    """Create a call room on main, register it, make its first link and show that link."""
    matrix_id = matrix_id_of(request.user)
    if matrix_id is None or not may_create_call_rooms(request.user):
        return render(request, "moderator/room_new.html", {"form": None}, status=403)
    form = NewRoomForm(request.POST or None)
    status = 400 if form.errors else 200
    if request.method == "POST" and form.is_valid():
        try:
            room = call_room_create(
                name=form.cleaned_data["name"],
                topic=form.cleaned_data["topic"],
                admin=matrix_id,
            )
        except RoomNotCreated as refused:
            form.add_error(None, refused.message)
            status = refused.status
        else:
            new = invite_link_create(
                room=room, created_by=actor_name(request.user), label=gettext("First link")
            )
            messages.success(
                request,
                gettext(
                    "%(room)s is created, and you are its admin: accept the invitation in your "
                    "Matrix client to join the call. Here is its invite link."
                )
                % {"room": room},
            )
            return redirect("moderator-link", pk=new.link.pk)
    return render(request, "moderator/room_new.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def room_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """The room's default retention policy, the room and language of its waiting notice,
    chosen by the room's admins (those who may change its power levels)."""
    room, rights = room_for(request, pk)
    if not rights.change_settings:
        return render(
            request, "moderator/room_settings.html", {"room": room, "form": None}, status=403
        )
    form = RoomSettingsForm(
        request.POST or None,
        initial={
            "retention_policy": room.retention_policy,
            "notice_room": room.notice_room_id,
            "notice_language": room.notice_language,
        },
    )
    if request.method == "POST" and form.is_valid():
        try:  # checked on main first: a refused room saves nothing
            notice_room_set(room, form.cleaned_data["notice_room"])
        except (GuestGateError, MatrixError) as refused:
            form.add_error("notice_room", refused.message)
        else:
            call_room_set_policy(
                room, form.cleaned_data["retention_policy"], by=actor_name(request.user)
            )
            notice_language_set(room, form.cleaned_data["notice_language"])
            messages.success(request, gettext("The room's settings are saved."))
            return redirect("moderator-room-settings", pk=room.pk)
    return render(
        request,
        "moderator/room_settings.html",
        {"room": room, "form": form},
        status=400 if form.errors else 200,
    )
