"""Every Prometheus metric of the service, in one place (docs/metrics.md lists the same names).

``Metrics`` owns its own registry - nothing is registered at import time - so the composition root
builds one per process and tests can build as many as they like. Cache figures and stuck partitions
are read when Prometheus scrapes (``CacheCollector``, ``PartitionsCollector``), lag comes from
librdkafka's statistics: the hot paths pay nothing for them. Nothing here imports the parts it
measures; each hands in a callable (``watch_cache``, ``watch_partitions``).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from internal.pkg.histograms import Distribution, cumulative, le_labels


class CacheFigures(Protocol):
    """What the cache reports (internal/cache/lru.py's CacheStats)."""

    @property
    def entries(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def oversize_skipped(self) -> int: ...
    @property
    def pages_oversize(self) -> int: ...


# (topic, partition, stuck) for every assigned partition (internal/consumer/state.py).
PartitionFigures = Iterable[tuple[str, int, bool]]

FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
# Freshness is judged in milliseconds at everyday rates and in minutes after an outage. Steps of 2.5 ms
# from 5 to 25 ms: at everyday rates it is compared with Kafka alone (~6 ms) to within a few ms, which
# one bucket from 10 to 25 ms could not show (docs/performance.md, issue 25).
FRESHNESS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
AGES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
GROUP_LABELS = 50  # distinct group labels of dlq_letters_total at most (Prometheus series are not free)
OTHER_GROUP = "other"

# The names, for docs/metrics.md and the tests that keep the docs, dashboard and alerts honest.
METRIC_NAMES = (
    "http_requests_total",
    "http_request_duration_seconds",
    "consumer_messages_total",
    "consumer_batch_size",
    "consumer_batch_duration_seconds",
    "consumer_message_age_seconds",
    "consumer_order_freshness_seconds",
    "consumer_freshness_objective_seconds",
    "consumer_lag",
    "consumer_retries_total",
    "consumer_paused",
    "consumer_partition_stuck",
    "consumer_commit_failures_total",
    "consumer_transaction_aborts_total",
    "consumer_rewinds_total",
    "consumer_transaction_commit_seconds",
    "consumer_stopped",
    "consumer_drift_paused",
    "consumer_drift_trips_total",
    "dlq_messages_total",
    "dlq_letters_total",
    "dlq_newest_letter_timestamp_seconds",
    "dlq_topic_messages",
    "dlq_truncated_letters_total",
    "cache_hits_total",
    "cache_misses_total",
    "cache_evictions_total",
    "cache_oversize_skipped_total",
    "cache_pages_not_kept_total",
    "cache_entries",
    "cache_bytes",
    "cache_warmup_duration_seconds",
    "db_query_duration_seconds",
    "db_up",
    "db_transient_errors_total",
    "l0_build_info",
    "process_start_time_seconds",
)


class Metrics:
    def __init__(self, version: str, freshness_objective_s: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = HttpRequests(FAST)
        r.register(self.http)
        self.messages = Counter(
            "consumer_messages_total", "Messages finished, by outcome", ["outcome"], registry=r
        )
        self.batch_size = Histogram(
            "consumer_batch_size", "Messages per batch", buckets=BATCH_SIZES, registry=r
        )
        self.batch_duration = Histogram(
            "consumer_batch_duration_seconds", "Time to process one batch", buckets=FAST, registry=r
        )
        # Two observations per message: fed a batch at a time (Distribution), not one call each.
        self.message_age = Distribution(
            "consumer_message_age_seconds",
            "From the producer's timestamp to the message being finished (stored or dead-lettered)",
            AGES,
        )
        self.freshness = Distribution(
            "consumer_order_freshness_seconds",
            "From the producer's timestamp to the order being committed and in the cache (stored orders)",
            FRESHNESS,
        )
        r.register(self.message_age)
        r.register(self.freshness)
        # The objective is configuration (consumer.freshness_objective_ms); exported, so that the
        # alert compares with it instead of holding a second copy of the number.
        Gauge(
            "consumer_freshness_objective_seconds",
            "The p99 freshness above which the OrdersNotFresh alert fires",
            registry=r,
        ).set(freshness_objective_s)
        self.lag = Gauge(
            "consumer_lag", "High watermark minus committed offset", ["topic", "partition"], registry=r
        )
        self.retries = Counter("consumer_retries_total", "Retries after transient errors", registry=r)
        self.paused = Gauge("consumer_paused", "1 while partitions are paused by an outage", registry=r)
        self.commit_failures = Counter(
            "consumer_commit_failures_total", "Offset commits the broker did not confirm", registry=r
        )
        self.transaction_aborts = Counter(
            "consumer_transaction_aborts_total",
            "Dead-letter transactions aborted (their partitions are read again)",
            registry=r,
        )
        self.rewinds = Counter(
            "consumer_rewinds_total",
            "Partitions read again from their committed offset after an aborted transaction",
            registry=r,
        )
        self.transaction_commit = Histogram(
            "consumer_transaction_commit_seconds",
            "Time of one transaction: begin, letters, offsets, commit",
            buckets=FAST,
            registry=r,
        )
        self.stopped = Gauge(
            "consumer_stopped", "1 when consumption stopped for good (fatal error or crash)", registry=r
        )
        self.dead_letters = Counter(
            "dlq_messages_total", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.letters = Counter(
            "dlq_letters_total",
            f"Dead letters acknowledged, by reason and group (the console's groups; the first "
            f"{GROUP_LABELS} groups seen get a label of their own, later ones count as 'other')",
            ["reason", "group"],
            registry=r,
        )
        self._group_labels: set[str] = set()
        self._group_lock = threading.Lock()
        self.newest_letter = Gauge(
            "dlq_newest_letter_timestamp_seconds",
            "Unix time of the newest letter this instance dead-lettered (0 before the first)",
            registry=r,
        )
        self.dlq_size = Gauge(
            "dlq_topic_messages",
            "Letters the dead-letter topic holds: the sum of its partitions' high minus low watermarks, "
            "asked of the broker every 30 s (NaN while unknown)",
            registry=r,
        )
        self.drift_paused = Gauge(
            "consumer_drift_paused", "1 while the drift guard holds consumption (until resumed)", registry=r
        )
        self.drift_trips = Counter(
            "consumer_drift_trips_total", "Times the drift guard paused consumption", registry=r
        )
        self.truncated_letters = Counter(
            "dlq_truncated_letters_total",
            "Dead letters sent as stubs because the full letter was refused for good",
            registry=r,
        )
        self.warmup_duration = Gauge(
            "cache_warmup_duration_seconds", "How long the last cache warm-up took", registry=r
        )
        self.db_duration = Histogram(
            "db_query_duration_seconds",
            "Database round trips, by operation",
            ["op"],
            buckets=FAST,
            registry=r,
        )
        self.db_up = Gauge("db_up", "1 when the last database operation succeeded", registry=r)
        self.db_transient_errors = Counter(
            "db_transient_errors_total", "Database errors that passed with time", registry=r
        )
        Gauge("l0_build_info", "The running version", ["version"], registry=r).labels(version).set(1)
        # process_start_time_seconds (and prometheus_client's other process_* series): a restart loop
        # shows as its changes (alert ServiceRestarting).
        ProcessCollector(registry=r)

    def count_letters(self, letters: Iterable[tuple[str, str]], at_s: float) -> None:
        """Acknowledged letters as (reason, group); any worker thread. Group labels are bounded: a
        producer sending many unknown fields makes many groups, the series stay ``GROUP_LABELS``."""
        for reason, group in letters:
            with self._group_lock:
                if group not in self._group_labels and len(self._group_labels) < GROUP_LABELS:
                    self._group_labels.add(group)
                label = group if group in self._group_labels else OTHER_GROUP
            self.letters.labels(reason, label).inc()
        self.newest_letter.set(at_s)

    def watch_cache(self, stats: Callable[[], CacheFigures]) -> None:
        self.registry.register(CacheCollector(stats))

    def watch_partitions(self, partitions: Callable[[], PartitionFigures]) -> None:
        self.registry.register(PartitionsCollector(partitions))


class HttpRequests(Collector):
    """``http_requests_total{method,route,status}`` and ``http_request_duration_seconds{method,route}``,
    kept in plain dicts and exported at scrape time.

    Every request is answered on the one event loop thread, which is also where ``/metrics`` is
    served: one writer, no lock. prometheus_client's Counter and Histogram take a lock per update and
    the histogram walks its buckets in Python: ~15.7k instructions a request even with their children
    kept, against ~5.1k here - a sixth of a JSON cache hit's ~67k (docs/performance.md, measured by
    bench/metric_cost.py). ``record`` must therefore only be called from the event loop."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self._bounds = tuple(buckets)
        self._le = le_labels(self._bounds)
        self._counts: dict[tuple[str, str, int], int] = {}
        # (method, route) -> [sum of seconds, count per bucket (the last one: above every bound)]
        self._timings: dict[tuple[str, str], tuple[list[float], list[int]]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        timing = self._timings.get((method, route))
        if timing is None:
            timing = self._timings[(method, route)] = ([0.0], [0] * (len(self._bounds) + 1))
        timing[0][0] += seconds
        timing[1][bisect_left(self._bounds, seconds)] += 1  # the first bound >= seconds: le semantics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        for (method, route, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request time", labels=["method", "route"]
        )
        for (method, route), (total, counts) in list(self._timings.items()):
            durations.add_metric([method, route], cumulative(self._le, counts), sum_value=total[0])
        yield durations


class PartitionsCollector(Collector):
    """consumer_partition_stuck at scrape time: 1 per stuck assigned partition, 0 for the others; a
    partition that is no longer assigned has no series."""

    def __init__(self, partitions: Callable[[], PartitionFigures]) -> None:
        self._partitions = partitions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "consumer_partition_stuck",
            "1 while the partition has messages waiting and its committed offset has not moved for "
            "consumer.stuck_after_s",
            labels=["topic", "partition"],
        )
        for topic, partition, stuck in self._partitions():
            family.add_metric([topic, str(partition)], 1.0 if stuck else 0.0)
        yield family


class CacheCollector(Collector):
    """Exports the cache's own counters at scrape time (no per-look-up metric cost)."""

    def __init__(self, stats: Callable[[], CacheFigures]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._stats()
        yield CounterMetricFamily("cache_hits", "Look-ups answered from the cache", value=s.hits)
        yield CounterMetricFamily("cache_misses", "Look-ups that had to read the database", value=s.misses)
        yield CounterMetricFamily(
            "cache_evictions", "Entries evicted to respect the bounds", value=s.evictions
        )
        # Orders served from the database on every look-up, and pages rendered on every view: a
        # 1,000-item order is both, so an operator sees why its look-ups cost what they cost.
        yield CounterMetricFamily(
            "cache_oversize_skipped",
            "Orders not cached because they cost more than cache.max_entry_bytes",
            value=s.oversize_skipped,
        )
        yield CounterMetricFamily(
            "cache_pages_not_kept",
            "Order pages served but not kept with their entry (JSON and page over cache.max_entry_bytes)",
            value=s.pages_oversize,
        )
        yield GaugeMetricFamily("cache_entries", "Orders in the cache", value=s.entries)
        yield GaugeMetricFamily(
            "cache_bytes", "Bytes the cache accounts for (JSON plus overhead)", value=s.bytes
        )
