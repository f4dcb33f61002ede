"""The public home page: where a guest types the code from a poster or an invitation; and
``/branding.css``, the organisation's accent colour every page links.

Nothing internal is shown here and no homeserver is called: the operational view is
``/healthz`` and ``manage.py doctor``.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from ops.clientaddress import client_address
from ops.ratelimit import Limit, rate_limit_check, rate_limit_count
from rooms.invite_codes import TOKEN_LENGTH, invite_code_read
from rooms.invite_links import InviteLinkUnusable, invite_link_for_token


class InviteCodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Invitation code"),
        max_length=500,  # room for a pasted link
        help_text=gettext_lazy(
            "It is printed under the QR code, like abcde-fghij-klmno-pqrst-uvwxyz. "
            "Dashes, spaces and capitals do not matter."
        ),
        error_messages={"required": gettext_lazy("Type the code from your invitation.")},
    )

    def clean_code(self) -> str:
        typed = invite_code_read(self.cleaned_data["code"])
        if typed.token is None:
            raise forms.ValidationError(
                ngettext(
                    "An invitation code has %(expected)d letters and digits; "
                    "you typed %(typed)d. Check it and try again.",
                    "An invitation code has %(expected)d letters and digits; "
                    "you typed %(typed)d. Check it and try again.",
                    typed.length,
                )
                % {"expected": TOKEN_LENGTH, "typed": typed.length},
                code="malformed",
            )
        try:
            invite_link_for_token(typed.token)
        except InviteLinkUnusable as error:
            raise forms.ValidationError(error.message, code=error.code) from None
        return typed.token


def _wrong_codes_limit() -> Limit:
    """Wrong codes per address, as the join form limits refused names: a separate, higher
    limit than successful joins, so a typo costs no one else at the same address a join."""
    return Limit("home-code-ip", settings.JOIN_REJECTED_RATE_PER_IP, 60)


@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """ "Enter the code from your invitation", and a way in for moderators."""
    form = InviteCodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        address = client_address(request)
        verdict = rate_limit_check(_wrong_codes_limit(), address)
        if not verdict.allowed:
            # Not looked up, not even read: the typed text stays in the field to try again.
            form = InviteCodeForm(initial={"code": request.POST.get("code", "")[:500]})
            refused = ngettext(
                "Too many wrong codes were typed from here. "
                "Please try again in %(seconds)d second.",
                "Too many wrong codes were typed from here. "
                "Please try again in %(seconds)d seconds.",
                verdict.retry_after,
            ) % {"seconds": verdict.retry_after}
            response = render(request, "home.html", {"form": form, "refused": refused}, status=429)
            response["Retry-After"] = str(verdict.retry_after)
            return response
        if form.is_valid():
            return redirect("join", token=form.cleaned_data["code"])
        rate_limit_count(_wrong_codes_limit(), address)
        status = 400
    return render(request, "home.html", {"form": form}, status=status)


#: A year: the stylesheet's address changes with its content (``?v=`` its hash).
_LONG_CACHE = "public, max-age=31536000, immutable"


@require_http_methods(["GET", "HEAD"])
def branding_css(request: HttpRequest) -> HttpResponse:
    """The accent colour as CSS custom properties (the strict CSP forbids inline styles).
    Cached for a year when asked for under the current hash; an old hash gets today's
    stylesheet, briefly cached, so a page cached before a change still looks right."""
    branding = settings.BRANDING
    response = HttpResponse(branding.stylesheet, content_type="text/css; charset=utf-8")
    current = request.GET.get("v") == branding.version
    response["Cache-Control"] = _LONG_CACHE if current else "public, max-age=300"
    return response
