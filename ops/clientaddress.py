"""Who is asking: a request's client address, also behind the reverse proxies an operator names.

A proxy connects to GuestGate itself, so ``REMOTE_ADDR`` is the proxy's address and every
client would share it (one bucket for every rate limit). Proxies add the address they were
connected from to ``X-Forwarded-For``; anyone can send that header too. So the header is read
only when the connecting peer is one of ``GUESTGATE_TRUSTED_PROXIES``, from the right: each
trusted proxy vouches for the address just left of its own entry, and the first address that
is not a trusted proxy is the client. Entries further left were written by the client (or
whoever it pretends to be) and are never used.

Like Django's own ``SECURE_PROXY_SSL_HEADER``, this is configuration, not detection: a proxy
that is not listed is the client, and a listed one must append to ``X-Forwarded-For`` on every
request (nginx ``$proxy_add_x_forwarded_for``, Caddy, HAProxy ``option forwardfor`` do).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from django.conf import settings
from django.http import HttpRequest

# Headers a reverse proxy adds to say whom it forwards for.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent ``request``: the connecting peer, or, when that
    peer is a trusted proxy, the rightmost address in ``X-Forwarded-For`` that is not one.

    An entry that is not an IP address ends the walk: the trusted proxy that passed it on is
    the last address anyone vouched for, so it counts as the client.
    """
    peer = _parsed(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return str(request.META.get("REMOTE_ADDR", ""))
    if not is_trusted_proxy(peer):
        return str(peer)
    client = peer
    for entry in reversed(_forwarded_for(request)):
        address = _parsed(entry)
        if address is None:
            break
        client = address
        if not is_trusted_proxy(address):
            break
    return str(client)


def came_through_untrusted_proxy(request: HttpRequest) -> bool:
    """Whether the request carries a proxy's forwarding header although its peer is no
    trusted proxy: then the peer's address says nothing about who asks (a proxy on the same
    machine makes every request come from 127.0.0.1), or the header is forged."""
    peer = _parsed(request.META.get("REMOTE_ADDR", ""))
    if peer is not None and is_trusted_proxy(peer):
        return False
    return any(header in request.headers for header in FORWARDING_HEADERS)


def is_trusted_proxy(address: IPv4Address | IPv6Address) -> bool:
    return any(address in network for network in settings.TRUSTED_PROXIES)


def _forwarded_for(request: HttpRequest) -> list[str]:
    # Several X-Forwarded-For header lines arrive joined by commas (WSGI), in order.
    raw = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


def _parsed(text: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:  # ::ffff:a.b.c.d
        return address.ipv4_mapped
    return address
