"""Rate limits kept in Django's cache (Redis in production, files in ``var/``): fixed windows
that count attempts, and backoffs that make a key wait longer after each further failure."""

from __future__ import annotations

import math
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
    retry_after: int  # seconds until the window (or the wait) that refused ends


ALLOWED = Verdict(True, 0)


def rate_limit_hit(limit: Limit, key: str) -> Verdict:
    """Count one attempt for ``key`` (an IP address, a link, a room) against ``limit``."""
    window, count = _count(limit, key)
    if count <= limit.count:
        return ALLOWED
    return Verdict(False, _window_left(limit, window))


def rate_limits_hit(checks: list[tuple[Limit, str]]) -> Verdict:
    """Apply several limits; the first that refuses decides."""
    for limit, key in checks:
        verdict = rate_limit_hit(limit, key)
        if not verdict.allowed:
            return verdict
    return ALLOWED


def rate_limit_check(limit: Limit, key: str) -> Verdict:
    """Whether ``key`` may try once more within ``limit``, without counting the try: for
    limits on failures, which are counted (``rate_limit_count``) only once known."""
    window = _window(limit)
    count = cache.get(_window_key(limit, key, window), 0)
    if count < limit.count:
        return ALLOWED
    return Verdict(False, _window_left(limit, window))


def rate_limit_count(limit: Limit, key: str) -> None:
    """Count one failure of ``key`` against ``limit`` (see ``rate_limit_check``)."""
    _count(limit, key)


def _window(limit: Limit) -> int:
    return int(time.time() // limit.seconds)


def _window_key(limit: Limit, key: str, window: int) -> str:
    return f"ratelimit:{limit.name}:{key}:{window}"


def _window_left(limit: Limit, window: int) -> int:
    return (window + 1) * limit.seconds - int(time.time())


def _count(limit: Limit, key: str) -> tuple[int, int]:
    window = _window(limit)
    cache_key = _window_key(limit, key, window)
    try:
        count = cache.incr(cache_key)  # one round trip while the window's counter exists
    except ValueError:  # the window's first attempt (or its counter just expired)
        count = 1 if cache.add(cache_key, 1, timeout=limit.seconds + 1) else cache.incr(cache_key)
    return window, count


@dataclass(frozen=True)
class Backoff:
    """Failures of one key: the first ``free - 1`` cost nothing; from the ``free``-th on, each
    makes the key wait, twice as long as the wait before (``first_wait``, then twice that,
    and so on, at most ``longest_wait`` seconds). Failures are forgotten ``forget_after``
    seconds after the last one, or at once when the key succeeds (``backoff_cleared``)."""

    name: str
    free: int
    first_wait: int
    longest_wait: int
    forget_after: int


def backoff_verdict(backoff: Backoff, key: str) -> Verdict:
    """Whether ``key`` may try now, or how long it still has to wait."""
    until = cache.get(_backoff_key(backoff, key, "until"))
    left = math.ceil(until - time.time()) if until is not None else 0
    return ALLOWED if left <= 0 else Verdict(False, left)


def backoff_failed(backoff: Backoff, key: str) -> None:
    """Count one failure of ``key``; from the ``free``-th on, it has to wait."""
    failures_key = _backoff_key(backoff, key, "failures")
    try:
        failures = cache.incr(failures_key)
    except ValueError:
        failures = (
            1 if cache.add(failures_key, 1, backoff.forget_after) else cache.incr(failures_key)
        )
    cache.touch(failures_key, backoff.forget_after)  # forgotten that long after the last one
    if failures < backoff.free:
        return
    doublings = min(failures - backoff.free, 32)  # 2**32 waits are longer than any cap
    wait = min(backoff.longest_wait, backoff.first_wait * 2**doublings)
    cache.set(_backoff_key(backoff, key, "until"), time.time() + wait, timeout=wait + 1)


def backoff_cleared(backoff: Backoff, key: str) -> None:
    """Forget ``key``'s failures (it succeeded)."""
    cache.delete_many([_backoff_key(backoff, key, "failures"), _backoff_key(backoff, key, "until")])


def _backoff_key(backoff: Backoff, key: str, part: str) -> str:
    return f"backoff:{backoff.name}:{key}:{part}"
