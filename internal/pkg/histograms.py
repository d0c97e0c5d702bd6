"""Histograms exported at scrape time from plain counts: the "le" labels and cumulative buckets of
the exposition, and ``Distribution``, a label-less histogram fed a batch at a time."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


def le_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """A histogram's "le" labels, spelt as prometheus_client spells them, +Inf last."""
    return tuple(floatToGoString(b) for b in (*bounds, math.inf))  # type: ignore[no-untyped-call]


def cumulative(le: tuple[str, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Per-bucket counts (the last one above every bound) as the cumulative (le, count) pairs of
    the exposition."""
    running, buckets = 0, []
    for label, count in zip(le, counts, strict=True):
        running += count
        buckets.append((label, running))
    return buckets


class Distribution(Collector):
    """A histogram without labels that takes its observations a batch at a time.

    The consumer observes two values per message (age and freshness); prometheus_client's Histogram
    takes two locks and walks its buckets in Python for each, which on the poll thread cost more than
    accepting the message (docs/performance.md, issue 25). Here a batch is counted outside the lock
    and added under one lock hold; a scrape copies under the same lock, so it never sees a sum
    without its counts."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self._name, self._documentation = name, documentation
        self._bounds = tuple(buckets)
        self._le = le_labels(self._bounds)
        self._lock = threading.Lock()
        self._sum = 0.0
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound

    def observe_many(self, values: Iterable[float]) -> None:
        """Count finite values (ages and freshness come from integer timestamps): a NaN would land in
        the first bucket here, in +Inf with prometheus_client."""
        bounds = self._bounds
        counts = [0] * len(self._counts)
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # the first bound >= value: le semantics
            total += value
        with self._lock:
            self._sum += total
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            total, counts = self._sum, list(self._counts)
        buckets = cumulative(self._le, counts)
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=total)
