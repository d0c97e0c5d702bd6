"""Cache warm-up at start: the latest N orders, retried in the background while the database is down.

Readiness stays false until it ends (``on_done``), so a load balancer does not send look-ups to an
instance whose every request would be a miss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing

import structlog

from internal.cache.lru import Cacheable, OrderCache
from internal.domain.errors import ServiceError
from internal.pkg.backoff import Backoff

log = structlog.get_logger(component="cache")


def warm_up(
    cache: OrderCache,
    latest: Callable[[int], Generator[Cacheable, None, None]],
    count: int,
    backoff: Backoff,
    stopping: threading.Event,
) -> tuple[int, float] | None:
    """Load the newest ``count`` orders; retry until it works or ``stopping`` is set.

    Returns (orders cached, seconds the successful attempt took), or None when stopped first.
    """
    attempt = 0
    while not stopping.is_set():
        started = time.perf_counter()
        try:
            with closing(latest(count)) as newest_first:  # cancels the streamed queries if cut short
                cached = cache.warm(newest_first)
        except ServiceError as exc:
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning("cache_warmup_failed", error=str(exc), attempt=attempt, retry_in_s=round(delay, 2))
            stopping.wait(delay)
            continue
        seconds = time.perf_counter() - started
        log.info("cache_warmed", orders=cached, seconds=round(seconds, 3))
        return cached, seconds
    return None
