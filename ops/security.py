"""Content-Security-Policy on every response, static files included (Django 5.2 has none
built in). Its middleware sits above WhiteNoise, which answers static files itself.

The policy allows only GuestGate's own scripts, styles and images: no inline code anywhere
(pages load their scripts and styles from ``static/``). A view that needs another policy
sets its own ``Content-Security-Policy`` header, which is left as it is; that is the only
opt-out, so an exception shows up in the view that makes it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and HEADER not in response:
            response[HEADER] = policy
        return response
