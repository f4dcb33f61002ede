"""The pages a guest sees: the join form behind an invite link, and the live lobby."""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.displaynames import CleanName
from accounts.models import RetentionPolicy
from accounts.services import guest_account_seen
from guestgate.errors import GuestGateError
from ops.clientaddress import client_address
from ops.ratelimit import Limit, Verdict, rate_limit_hit, rate_limits_hit
from ops.security import HEADER as CSP_HEADER
from ops.security import lobby_policy
from rooms.call_host import call_page_context, call_preload
from rooms.forms import JoinForm
from rooms.invite_links import InviteLinkUnusable, invite_link_for_token
from rooms.live import changes
from rooms.models import InviteLink, JoinRequest
from rooms.provisioning import (
    GuestArrival,
    RoomFull,
    join_request_cancel,
    join_request_retry,
    join_request_start,
    policy_for_link,
    returning_guest_for_link,
)
from rooms.selectors import join_request_for_lobby, join_request_may_ask_again, lobby_state

BROWSER_KEY_COOKIE = "guestgate_guest"
_LOBBIES = "lobbies"  # session key: the lobbies this browser may see
LONG_POLL_SECONDS = 20.0
# What ``?since=`` may be: the version a lobby was given, ASCII digits only (``str.isdigit``
# also takes "²" and "①", which ``int`` refuses), and short enough for ``int`` to read.
_VERSION = re.compile(r"[0-9]{1,20}")


def _join_attempt_counted(request: HttpRequest, link: InviteLink, *, accepted: bool) -> Verdict:
    """Count a join form against the limits: an accepted name against the joins of its
    address, link and room; a refused one (a typo) only against the address's refused
    attempts, a separate and higher limit, so typing errors do not use up the joins of
    people who share an address (an office network, a proxy)."""
    address = client_address(request)
    if not accepted:
        return rate_limit_hit(
            Limit("join-refused-ip", settings.JOIN_REJECTED_RATE_PER_IP, 60), address
        )
    return rate_limits_hit(
        [
            (Limit("join-ip", settings.JOIN_RATE_PER_IP, 60), address),
            (Limit("join-link", settings.JOIN_RATE_PER_LINK, 60), str(link.pk)),
            (Limit("join-room", settings.JOIN_RATE_PER_ROOM, 60), str(link.room_id)),
        ]
    )


def _link_error(request: HttpRequest, error: GuestGateError) -> HttpResponse:
    return render(request, "guest/link_error.html", {"error": error}, status=error.status)


def _arrived(request: HttpRequest, arrival: GuestArrival, policy: RetentionPolicy) -> HttpResponse:
    """To the guest's lobby, which this browser may now see; the browser keeps its key."""
    public_id = str(arrival.join_request.public_id)
    response = _to_lobby(request, public_id)
    response.set_signed_cookie(
        BROWSER_KEY_COOKIE,
        arrival.browser_key,
        max_age=int(policy.return_window.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
    return response


def _to_lobby(request: HttpRequest, public_id: str) -> HttpResponse:
    lobbies = [id_ for id_ in request.session.get(_LOBBIES, []) if id_ != public_id]
    request.session[_LOBBIES] = [*lobbies[-9:], public_id]
    return redirect("lobby", public_id=public_id)


def _rate_limited(request: HttpRequest, verdict: Verdict) -> HttpResponse:
    response = render(
        request, "guest/rate_limited.html", {"retry_after": verdict.retry_after}, status=429
    )
    response["Retry-After"] = str(verdict.retry_after)
    return response


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: str) -> HttpResponse:
    """The name form; a returning browser is offered "Continue as <name>" first (``continue``
    in the POST: back to the lobby its request still has, else asking again under that name)."""
    try:
        link = invite_link_for_token(token)
    except InviteLinkUnusable as error:
        return _link_error(request, error)
    policy = policy_for_link(link)
    browser_key = request.get_signed_cookie(BROWSER_KEY_COOKIE, default=None)
    returning = returning_guest_for_link(link=link, browser_key=browser_key, policy=policy)
    data: QueryDict | None = request.POST if request.method == "POST" else None
    if data is not None and "continue" in data and returning is not None:
        if returning.join_request is not None:
            return _to_lobby(request, str(returning.join_request.public_id))
        named = QueryDict(mutable=True)
        named["display_name"] = returning.typed_name
        data = named
    form = JoinForm(
        data, protected_names=link.room.protected_names, suffix=policy.displayname_suffix
    )
    if data is not None:
        verdict = _join_attempt_counted(request, link, accepted=form.is_valid())
        if not verdict.allowed:
            return _rate_limited(request, verdict)
        if form.is_valid():
            try:
                arrival = join_request_start(
                    link=link,
                    name=form.cleaned_data["display_name"],
                    browser_key=browser_key,
                    policy=policy,
                )
            except InviteLinkUnusable as error:
                return _link_error(request, error)
            except RoomFull as full:
                form.add_error(None, full.message)
                return render(
                    request,
                    "guest/join.html",
                    {"form": form, "room": link.room},
                    status=full.status,
                )
            return _arrived(request, arrival, policy)
    return render(
        request,
        "guest/join.html",
        {"form": form, "room": link.room, "returning": returning},
        status=400 if form.errors else 200,
    )


def _own_join_request(request: HttpRequest, public_id: str) -> JoinRequest:
    """The lobby of this browser's join request; any other is not found (not forbidden)."""
    if public_id not in request.session.get(_LOBBIES, []):
        raise Http404("not this browser's lobby")
    join_request = join_request_for_lobby(public_id)
    if join_request is None:
        raise Http404("no such lobby")
    return join_request


@require_GET
@never_cache  # it carries the guest's access token once they are let in
def lobby(request: HttpRequest, public_id: str) -> HttpResponse:
    join_request = _own_join_request(request, str(public_id))
    state = {**lobby_state(join_request), "call_preload": call_preload(join_request)}
    session_json = json.dumps(state["session"], indent=2) if state["session"] else ""
    response = render(
        request,
        "guest/lobby.html",
        {
            "state": state,
            "public_id": public_id,
            "session_json": session_json,
            "call": call_page_context(join_request.room),
        },
    )
    # The lobby hosts the call: it talks to the guest homeserver and frames Element Call (and
    # in an encrypted room runs the crypto's WebAssembly).
    response[CSP_HEADER] = lobby_policy(encrypted=join_request.room.encrypted)
    return response


@require_GET
def lobby_status(request: HttpRequest, public_id: str) -> JsonResponse:
    """Long poll: answers when the request's version differs from ``?since=`` (or at once
    without it, or once the guest's account has ended), or after about 20 s with the
    unchanged state. A ``since`` that is not a version number is refused (400)."""
    public_id = str(public_id)
    join_request = _own_join_request(request, public_id)
    since = request.GET.get("since", "")
    if since and not _VERSION.fullmatch(since):
        return JsonResponse(
            {
                "error": {
                    "code": "lobby.bad_version",
                    "message": gettext(
                        "since must be a version number given by this lobby (digits 0-9)."
                    ),
                }
            },
            status=400,
            headers={"Cache-Control": "no-store"},
        )
    if join_request.guest is not None:
        guest_account_seen(join_request.guest)
    state = lobby_state(join_request)
    # A lobby whose account has ended changes no more, though its request may say "joined".
    ended = state["status"] == JoinRequest.Status.EXPIRED
    if since and int(since) == join_request.version and not ended:
        changes.wait_for_request(public_id, join_request.version, LONG_POLL_SECONDS)
        join_request = join_request_for_lobby(public_id) or join_request
        state = lobby_state(join_request)
    state["call_preload"] = call_preload(join_request)
    return JsonResponse(state, headers={"Cache-Control": "no-store"})


@require_POST
def lobby_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    join_request_cancel(_own_join_request(request, str(public_id)))
    return redirect("lobby", public_id=public_id)


@require_POST
def lobby_ask_again(request: HttpRequest, public_id: str) -> HttpResponse:
    """ "Ask again" after a cancel, a denial, a removal or an expired pass, where the invite link
    still lets people in (``join_request_may_ask_again``): a new request under the same name
    (the same account while it lives), counted like a join form. Elsewhere: back to the lobby,
    nothing changed."""
    join_request = _own_join_request(request, str(public_id))
    link = join_request.invite_link
    if link is None or not join_request_may_ask_again(join_request, status=_shown(join_request)):
        return redirect("lobby", public_id=public_id)
    verdict = _join_attempt_counted(request, link, accepted=True)
    if not verdict.allowed:
        return _rate_limited(request, verdict)
    policy = policy_for_link(link)
    name = CleanName(
        typed=join_request.display_name.removesuffix(policy.displayname_suffix).strip()
        or join_request.display_name,
        shown=join_request.display_name,
    )
    try:
        arrival = join_request_start(
            link=link,
            name=name,
            browser_key=request.get_signed_cookie(BROWSER_KEY_COOKIE, default=None),
            policy=policy,
        )
    except (InviteLinkUnusable, RoomFull) as error:
        return _link_error(request, error)
    return _arrived(request, arrival, policy)


def _shown(join_request: JoinRequest) -> str:
    """The status the lobby shows (a let-in guest whose pass ended: expired)."""
    return str(lobby_state(join_request)["status"])


@require_POST
def lobby_retry(request: HttpRequest, public_id: str) -> HttpResponse:
    join_request_retry(_own_join_request(request, str(public_id)))
    return redirect("lobby", public_id=public_id)
