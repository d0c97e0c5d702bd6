"""Database metrics for the store's operations: duration by operation, up/down, transient errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from internal.domain.errors import TransientError
from internal.pkg.metrics import Metrics


class DbObserver:
    """Wraps each database operation of the reader and the writer; without metrics it does nothing."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._m = metrics

    @contextmanager
    def op(self, name: str) -> Iterator[None]:
        if self._m is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        except TransientError:
            self._m.db_transient_errors.inc()
            self._m.db_up.set(0)
            raise
        self._m.db_up.set(1)
        self._m.db_duration.labels(name).observe(time.perf_counter() - started)

    def up(self, is_up: bool) -> None:
        if self._m is not None:
            self._m.db_up.set(1 if is_up else 0)
