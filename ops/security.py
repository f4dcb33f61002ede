"""Content-Security-Policy on every response, static files included (Django 5.2 has none
built in). Its middleware sits above WhiteNoise, which answers static files itself.

The policy allows only GuestGate's own scripts, styles and images: no inline code anywhere
(pages load their scripts and styles from ``static/``). A view that needs another policy
sets its own ``Content-Security-Policy`` header, which is left as it is; that is the only
opt-out for pages, so an exception shows up in the view that makes it (the lobby's, which
hosts the call: ``lobby_policy``).

Element Call's embedded build under ``/call/`` (static files WhiteNoise serves from the
front end's build) is the one path with a policy of its own, ``call_policy`` (CALL-LAB §10):
its ``index.html`` has two inline scripts, allowed by their hashes, computed from the
installed file so that an upgrade cannot silently break it or widen the policy; and it may
be framed by GuestGate's own pages only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
CALL_PATH = "/call/"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(CALL_PATH) and settings.CALL_MODE == "embedded":
            response[HEADER] = call_policy()
            # X-Frame-Options cannot name another origin; frame-ancestors says who may frame.
            del response["X-Frame-Options"]
            if not settings.CALL_ORIGIN:
                response["X-Frame-Options"] = "SAMEORIGIN"
            return response
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and HEADER not in response:
            response[HEADER] = policy
        return response


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _focus_origins() -> list[str]:
    return [origin(transport["livekit_service_url"]) for transport in settings.RTC_TRANSPORTS]


def lobby_policy(*, encrypted: bool = False) -> str:
    """The default policy, plus what hosting the call needs: the guest's client talks to the
    guest homeserver (and EC's JWT service, CORS), and the page frames Element Call. The
    lobby of an ``encrypted`` room also runs the Rust crypto, WebAssembly compiled from
    GuestGate's own files (``'wasm-unsafe-eval'``, which allows no JavaScript eval); other
    lobbies do not (CALL-LAB §10)."""
    if settings.CALL_MODE != "embedded":
        return str(settings.CONTENT_SECURITY_POLICY)
    connect = ["'self'", origin(settings.GUEST_HS_PUBLIC_URL), *_focus_origins()]
    frame = settings.CALL_ORIGIN or "'self'"
    images = " ".join(filter(None, ["'self'", "data:", settings.BRANDING.logo_origin]))
    scripts = "'self' 'wasm-unsafe-eval'" if encrypted else "'self'"
    return (
        f"default-src 'self'; img-src {images}; style-src 'self'; script-src {scripts}; "
        f"connect-src {' '.join(dict.fromkeys(connect))}; frame-src {frame}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def call_policy() -> str:
    """Element Call's policy (CALL-LAB §10): its inline scripts by hash; connections to the
    guest homeserver, the JWT services and LiveKit (``wss:`` and ``https:``); framed only by
    GuestGate's pages."""
    connect = [
        "'self'",
        origin(settings.GUEST_HS_PUBLIC_URL),
        f"https://{settings.GUEST_HS_SERVER_NAME}",
        *_focus_origins(),
    ]
    for url in settings.LIVEKIT_URLS:
        host = urlsplit(url).netloc
        secure = urlsplit(url).scheme in ("wss", "https")
        connect += [f"wss://{host}", f"https://{host}"] if secure else [f"ws://{host}"]
    scripts = " ".join(f"'sha256-{digest}'" for digest in inline_script_hashes(_call_index()))
    ancestors = origin(settings.PUBLIC_URL) if settings.CALL_ORIGIN else "'self'"
    return (
        f"default-src 'self'; script-src 'self' {scripts}; style-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; "
        f"connect-src {' '.join(dict.fromkeys(connect))}; worker-src 'self' blob:; "
        f"frame-ancestors {ancestors}; base-uri 'none'; form-action 'none'"
    )


def _call_index() -> Path:
    return Path(settings.CALL_BUILD_DIR) / "index.html"


def inline_script_hashes(index: Path) -> tuple[str, ...]:
    """The CSP hashes of ``index``'s inline scripts, read again when the file changes."""
    return _hashes(index, index.stat().st_mtime_ns)


@cache
def _hashes(index: Path, mtime_ns: int) -> tuple[str, ...]:
    html = index.read_text(encoding="utf-8")
    return tuple(
        base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        for body in _INLINE_SCRIPT.findall(html)
    )
