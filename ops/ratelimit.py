"""Fixed-window rate limits kept in Django's cache (Redis in production, files in ``var/``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    name: str
    count: int
    seconds: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window that refused ends


def rate_limit_hit(limit: Limit, key: str) -> Verdict:
    """Count one attempt for ``key`` (an IP address, a link, a room) against ``limit``."""
    window = int(time.time() // limit.seconds)
    cache_key = f"ratelimit:{limit.name}:{key}:{window}"
    try:
        count = cache.incr(cache_key)  # one round trip while the window's counter exists
    except ValueError:  # the window's first attempt (or its counter just expired)
        count = 1 if cache.add(cache_key, 1, timeout=limit.seconds + 1) else cache.incr(cache_key)
    if count <= limit.count:
        return Verdict(True, 0)
    return Verdict(False, (window + 1) * limit.seconds - int(time.time()))


def rate_limits_hit(checks: list[tuple[Limit, str]]) -> Verdict:
    """Apply several limits; the first that refuses decides."""
    for limit, key in checks:
        verdict = rate_limit_hit(limit, key)
        if not verdict.allowed:
            return verdict
    return Verdict(True, 0)
