"""The call's focus (its LiveKit JWT services) as a guest's browser meets it: shared by the
doctor and ``/healthz``.

Element Call runs at GuestGate's origin and asks the JWT service from the browser, so the
service must answer the CORS preflight for that origin (CALL-LAB §5). Whether a call mode
other than the embedded one is in use decides whether having no service is a fault.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from matrix import MatrixError
from matrix.rtc import CorsAnswer, jwt_service_preflight

#: The guest homeserver announces delayed events (MSC4140) in /versions' unstable_features.
DELAYED_EVENTS_FEATURE = "org.matrix.msc4140"


def jwt_service_urls() -> list[str]:
    """The LiveKit JWT services the lobby gives Element Call (GUESTGATE_LIVEKIT_SERVICE_URLS)."""
    return [
        str(transport["livekit_service_url"])
        for transport in settings.RTC_TRANSPORTS
        if transport.get("type") == "livekit" and transport.get("livekit_service_url")
    ]


def embedded_call() -> bool:
    """Whether guests get the call in the lobby (not a link to Element Call elsewhere, which
    brings its own focus). ``CALL_MODE`` is the call mode setting; absent means embedded."""
    return getattr(settings, "CALL_MODE", "embedded") != "link"


def call_origin() -> str:
    """The origin Element Call's requests come from: GuestGate's own (it serves EC)."""
    parts = urlsplit(settings.PUBLIC_URL)
    return f"{parts.scheme}://{parts.netloc}"


def preflight_problem(url: str, *, timeout: float) -> tuple[str, CorsAnswer | None] | None:
    """What keeps a browser at GuestGate's origin from calling ``url`` (no URL in the words),
    with the preflight's answer when there was one; None when nothing does."""
    origin = call_origin()
    try:
        answer = jwt_service_preflight(url, origin=origin, timeout=timeout)
    except MatrixError as error:
        return f"does not answer ({error.message})", None
    if answer.status == 404:
        return "has no /sfu/get (HTTP 404 to the preflight)", answer
    if not answer.allows(origin, "POST", "content-type"):
        return (
            f"does not allow calls from GuestGate's origin (CORS preflight: HTTP {answer.status}, "
            f"Access-Control-Allow-Origin {answer.allow_origin!r}, "
            f"Access-Control-Allow-Headers {answer.allow_headers!r})",
            answer,
        )
    return None
