"""How long task steps take and which homeserver errors they meet, counted across processes.

Web workers and Celery workers are separate processes, so in-process counters would each
tell a part. These counts live in Django's cache instead: Redis in production, where INCRBY
is atomic and keys never expire; the file cache in development, where a count may be lost
now and then (concurrent writers, culled files), which is fine for a glance. ``/metrics``
reads them (``ops.metrics``). Recording never fails a task: a cache that is down costs
only the numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from matrix import MatrixError

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the duration histogram; a last bucket takes everything longer.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_PREFIX = "stepstats:v1"
_STEPS_KEY = f"{_PREFIX}:steps"
# Steps this process has seen in the index lately; the index is checked again after a while,
# in case another process rewrote it without ours.
_INDEX_RECHECK_SECONDS = 300.0
_indexed: dict[str, float] = {}


def run_step(step: str, action: Callable[[], object]) -> None:
    """Run ``action``, recording how long it took under ``step`` and, when it raises a
    homeserver error, that error's code. Exceptions pass through unchanged."""
    started = time.perf_counter()
    try:
        action()
    except MatrixError as error:
        _safely(_count_error, error.code)
        raise
    finally:
        _safely(_observe, step, time.perf_counter() - started)


@dataclass(frozen=True)
class StepDurations:
    step: str
    bucket_counts: tuple[int, ...]  # per bucket, not cumulative; one more than BUCKETS
    sum_seconds: float

    @property
    def count(self) -> int:
        return sum(self.bucket_counts)

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus histograms want them, ending with ``+Inf``."""
        total = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.bucket_counts, strict=True):
            total += count
            yield bound, total


def homeserver_error_counts() -> dict[str, int]:
    """Homeserver errors met by tasks, by GuestGate error code (every code, 0 if never)."""
    codes = sorted(_error_codes())
    values = caches["default"].get_many([_error_key(code) for code in codes])
    return {code: int(values.get(_error_key(code), 0)) for code in codes}


def step_durations() -> list[StepDurations]:
    cache = caches["default"]
    steps = sorted(cache.get(_STEPS_KEY) or [])
    keys = [key for step in steps for key in (*_bucket_keys(step), _sum_key(step))]
    values = cache.get_many(keys)
    return [
        StepDurations(
            step,
            tuple(int(values.get(key, 0)) for key in _bucket_keys(step)),
            int(values.get(_sum_key(step), 0)) / 1_000_000,
        )
        for step in steps
    ]


def _observe(step: str, seconds: float) -> None:
    bucket = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
    _incr(_bucket_keys(step)[bucket])
    _incr(_sum_key(step), round(seconds * 1_000_000))
    _index(step)


def _count_error(code: str) -> None:
    _incr(_error_key(code))


def _index(step: str) -> None:
    now = time.monotonic()
    if now - _indexed.get(step, -_INDEX_RECHECK_SECONDS) < _INDEX_RECHECK_SECONDS:
        return
    cache = caches["default"]
    steps = list(cache.get(_STEPS_KEY) or [])
    if step not in steps:
        cache.set(_STEPS_KEY, sorted([*steps, step]), timeout=None)
    _indexed[step] = now


def _incr(key: str, delta: int = 1) -> None:
    cache = caches["default"]
    if isinstance(cache, RedisCache):  # INCRBY: atomic, and keeps the key's "never expires"
        try:
            cache.incr(key, delta)
        except ValueError:  # not there yet
            if not cache.add(key, delta, timeout=None):
                cache.incr(key, delta)
    else:  # Django's incr would give the key the default timeout (5 minutes)
        cache.set(key, int(cache.get(key, 0)) + delta, timeout=None)


def _safely(record: Callable[..., None], *args: object) -> None:
    try:
        record(*args)
    except Exception:
        logger.warning("could not record step statistics", exc_info=True)


def _error_codes() -> set[str]:
    codes: set[str] = set()
    pending: list[type[MatrixError]] = [MatrixError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def _error_key(code: str) -> str:
    return f"{_PREFIX}:error:{code}"


def _bucket_keys(step: str) -> list[str]:
    return [f"{_PREFIX}:step:{step}:bucket:{i}" for i in range(len(BUCKETS) + 1)]


def _sum_key(step: str) -> str:
    return f"{_PREFIX}:step:{step}:sum_us"
