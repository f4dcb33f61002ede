"""The moderators' pages: sign-in, their rooms, the live queue, decisions, the audit log."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from guestgate.errors import GuestGateError
from matrix import MatrixError
from ops.clientaddress import client_address
from rooms.announcements import MAX_LENGTH as ANNOUNCEMENT_MAX_LENGTH
from rooms.announcements import AnnouncementRefused, announcement_send
from rooms.call_rooms import (
    BotMayNotChangeRoom,
    call_room_bot_fixes,
    call_room_fix_join_rule,
    call_room_forget,
    call_room_let_guests_join_call,
    call_room_recheck,
    call_room_register,
)
from rooms.live import changes
from rooms.models import CallRoom, JoinRequest
from rooms.moderation import (
    BAN_UNDO_WINDOW,
    join_request_approve,
    join_request_ban_undo,
    join_request_deny,
    join_request_remove_from_call,
    join_requests_approve_all,
    join_requests_ban_undoable,
)
from rooms.moderators import SignInRefused, moderator_sign_in
from rooms.permissions import RoomRights, actor_name, room_for, room_rights
from rooms.selectors import (
    call_room_problems,
    room_audit,
    room_queue,
    room_queue_token,
    room_recent_decisions,
    rooms_for_moderator,
)

LONG_POLL_SECONDS = 20.0


class SignInForm(forms.Form):
    matrix_id = forms.CharField(
        label=gettext_lazy("Matrix id"),
        max_length=255,
        help_text=gettext_lazy("For example @mona:example.org"),
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    form = SignInForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            user = moderator_sign_in(
                matrix_id=form.cleaned_data["matrix_id"],
                password=form.cleaned_data["password"],
                ip=client_address(request),
            )
        except SignInRefused as refused:
            form.add_error(None, refused.message)
            status = refused.status
        else:
            login(request, user, backend="rooms.moderators.MatrixModeratorBackend")
            target = request.GET.get("next", "")
            if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
                target = "dashboard"
            return redirect(target)
    elif request.method == "POST":
        status = 400
    return render(request, "moderator/sign_in.html", {"form": form}, status=status)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("moderator-login")


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "moderator/dashboard.html", {"rooms": rooms_for_moderator(request.user)})


@login_required
@require_POST
def room_register(request: HttpRequest) -> HttpResponse:
    typed = request.POST.get("room", "").strip()
    existed = CallRoom.objects.filter(room_id=typed).exists()
    try:
        room = call_room_register(room=typed, registered_by=actor_name(request.user))
    except (GuestGateError, MatrixError) as error:
        messages.error(request, error.message)
        return redirect("dashboard")
    if not room_rights(room, request.user).see:
        if not existed:
            call_room_forget(room)
        messages.error(
            request,
            gettext(
                "You need to be a moderator of that room (with the power to invite) to register it."
            ),
        )
        return redirect("dashboard")
    messages.success(request, gettext("%(room)s is registered.") % {"room": room})
    return redirect("moderator-room", pk=room.pk)


@login_required
@require_GET
def room_detail(request: HttpRequest, pk: int) -> HttpResponse:
    room, rights = room_for(request, pk)
    return _room_page(request, room, rights)


def _room_page(
    request: HttpRequest,
    room: CallRoom,
    rights: RoomRights,
    *,
    message_error: str = "",
    message_text: str = "",
) -> HttpResponse:
    return render(
        request,
        "moderator/room.html",
        {
            "room": room,
            "problems": call_room_problems(room),
            "bot_fixes": call_room_bot_fixes(room),
            "rights": rights,
            "queue": room_queue(room),
            "recent": room_recent_decisions(room),
            "token": room_queue_token(room),
            "just_banned": join_requests_ban_undoable(room) if rights.ban else [],
            "undo_seconds": int(BAN_UNDO_WINDOW.total_seconds()),
            "message_error": message_error,
            "message_text": message_text,
            "message_max": ANNOUNCEMENT_MAX_LENGTH,
        },
        status=400 if message_error else 200,
    )


@login_required
@require_POST
def message_waiting_guests(request: HttpRequest, pk: int) -> HttpResponse:
    """A moderator's one line to everyone waiting (the room page's message form). A refused
    line is shown again with the reason next to the field; nothing is sent."""
    room, rights = room_for(request, pk)
    if not rights.approve:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    text = request.POST.get("message", "")
    try:
        reached = announcement_send(room=room, moderator=actor_name(request.user), text=text)
    except AnnouncementRefused as refused:
        return _room_page(request, room, rights, message_error=refused.message, message_text=text)
    _say_reached(request, reached)
    return redirect("moderator-room", pk=room.pk)


@login_required
@require_POST
def message_waiting_guest(request: HttpRequest, pk: int) -> HttpResponse:
    """A moderator's one line to one waiting guest (their row in the queue)."""
    join_request = get_object_or_404(JoinRequest.objects.select_related("room"), pk=pk)
    room, rights = room_for(request, join_request.room_id)
    if not rights.approve:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    try:
        reached = announcement_send(
            room=room,
            moderator=actor_name(request.user),
            text=request.POST.get("message", ""),
            join_request=join_request,
        )
    except AnnouncementRefused as refused:
        messages.error(
            request,
            gettext("Nothing was sent to %(name)s: %(reason)s")
            % {"name": join_request.display_name, "reason": refused.message},
        )
        return redirect("moderator-room", pk=room.pk)
    _say_reached(request, reached)
    return redirect("moderator-room", pk=room.pk)


def _say_reached(request: HttpRequest, reached: int) -> None:
    if reached:
        messages.success(
            request,
            ngettext(
                "Your message is shown to %(count)d waiting guest.",
                "Your message is shown to %(count)d waiting guests.",
                reached,
            )
            % {"count": reached},
        )
    else:
        messages.warning(request, gettext("Nobody is waiting any more: nothing was sent."))


@login_required
@require_GET
def room_queue_live(request: HttpRequest, pk: int) -> JsonResponse:
    """Long poll: answers when the room's queue changed since ``?since=`` (or after ~20 s)."""
    room, rights = room_for(request, pk)
    since = request.GET.get("since", "")
    mark = changes.room_mark(room.pk)  # before reading the token: no change slips between
    if since and room_queue_token(room) == since:
        changes.wait_for_room(room.pk, mark, LONG_POLL_SECONDS)
    queue = room_queue(room)
    html = render_to_string(
        "moderator/_queue.html",
        {
            "room": room,
            "rights": rights,
            "queue": queue,
            "recent": room_recent_decisions(room),
        },
        request=request,
    )
    return JsonResponse(
        {
            "token": room_queue_token(room),
            "waiting": sum(1 for r in queue if r.status == JoinRequest.Status.WAITING),
            "html": html,
        },
        headers={"Cache-Control": "no-store"},
    )


def _decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    join_request = get_object_or_404(JoinRequest.objects.select_related("room"), pk=pk)
    room, rights = room_for(request, join_request.room_id)
    allowed = {
        "approve": rights.approve,
        "deny": rights.deny,
        "ban": rights.ban,
        "remove": rights.deny,  # a kick, like a denial
    }[decision]
    if not allowed:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    reason = request.POST.get("reason", "").strip()[:500]
    try:
        if decision == "approve":
            join_request_approve(join_request, moderator=actor_name(request.user))
        elif decision == "remove":
            join_request_remove_from_call(
                join_request, moderator=actor_name(request.user), reason=reason
            )
        else:
            join_request_deny(
                join_request,
                moderator=actor_name(request.user),
                reason=reason,
                ban=decision == "ban",
            )
    except GuestGateError as error:
        messages.warning(request, error.message)
    except MatrixError as error:
        _say_matrix_refused(request, error)
    return redirect("moderator-room", pk=room.pk)


def _say_matrix_refused(request: HttpRequest, error: MatrixError) -> None:
    messages.error(
        request,
        gettext("The Matrix server refused or did not answer: %(error)s")
        % {"error": error.message},
    )


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, "approve")


@login_required
@require_POST
def deny(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, "deny")


@login_required
@require_POST
def ban(request: HttpRequest, pk: int) -> HttpResponse:
    """The first POST (the queue's button) asks for confirmation on a page of its own, which
    works without JavaScript; the confirmed POST bans, and the room page offers an undo for a
    short while (``unban``)."""
    if request.POST.get("confirmed") != "yes":
        return _ban_confirmation(request, pk)
    return _decide(request, pk, "ban")


def _ban_confirmation(request: HttpRequest, pk: int) -> HttpResponse:
    join_request = get_object_or_404(JoinRequest.objects.select_related("room"), pk=pk)
    room, rights = room_for(request, join_request.room_id)
    if not rights.ban:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    return render(
        request,
        "moderator/ban_confirm.html",
        {
            "room": room,
            "join_request": join_request,
            "reason": request.POST.get("reason", "").strip()[:500],
            "undo_seconds": int(BAN_UNDO_WINDOW.total_seconds()),
        },
    )


@login_required
@require_POST
def unban(request: HttpRequest, pk: int) -> HttpResponse:
    """Undo a ban made moments ago (the room page's "Undo"): the person is denied, not banned."""
    join_request = get_object_or_404(JoinRequest.objects.select_related("room"), pk=pk)
    room, rights = room_for(request, join_request.room_id)
    if not rights.ban:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    try:
        join_request_ban_undo(join_request, moderator=actor_name(request.user))
    except GuestGateError as error:
        messages.error(request, error.message)
    except MatrixError as error:
        _say_matrix_refused(request, error)
    else:
        messages.success(
            request,
            gettext("The ban is undone: %(name)s was not let in, and may ask again.")
            % {"name": join_request.display_name},
        )
    return redirect("moderator-room", pk=room.pk)


@login_required
@require_POST
def remove_from_call(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, "remove")


@login_required
@require_POST
def approve_all(request: HttpRequest, pk: int) -> HttpResponse:
    room, rights = room_for(request, pk)
    if not rights.approve:
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    result = join_requests_approve_all(room, moderator=actor_name(request.user))
    said = [gettext("Let in %(count)d.") % {"count": result.approved}]
    if result.skipped:
        said.append(gettext("%(count)d were already handled.") % {"count": result.skipped})
    messages.success(request, " ".join(said))
    return redirect("moderator-room", pk=room.pk)


@login_required
@require_POST
def room_check(request: HttpRequest, pk: int) -> HttpResponse:
    room, rights = room_for(request, pk)
    fix = request.POST.get("fix", "")
    allowed = {"join_rule": rights.set_join_rule, "call_level": rights.let_guests_join_call}
    if not allowed.get(fix, True):  # the bot may; this moderator may not
        messages.error(request, gettext("Your power level in this room does not allow that."))
        return redirect("moderator-room", pk=room.pk)
    fixing = {"join_rule": call_room_fix_join_rule, "call_level": call_room_let_guests_join_call}
    try:
        room = fixing.get(fix, call_room_recheck)(room)
    except (MatrixError, BotMayNotChangeRoom) as error:
        messages.error(request, error.message)
    return redirect("moderator-room", pk=room.pk)


@login_required
@require_GET
def audit(request: HttpRequest, pk: int) -> HttpResponse:
    room, _rights = room_for(request, pk)
    query = request.GET.get("q", "").strip()[:100]
    return render(
        request,
        "moderator/audit.html",
        {"room": room, "entries": room_audit(room, query=query), "query": query},
    )
