"""docs/metrics.md and the code name exactly the same metrics; consumer reports move the right series."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from internal.cache.lru import OrderCache, entry_cost, make_entry
from internal.consumer.messages import BatchReport, Inbound
from internal.consumer.observe import LagFromStatistics, ReportMetrics
from internal.domain.order import Order
from internal.domain.outcomes import Outcome
from internal.domain.records import OrderRecord
from internal.pkg.histograms import Distribution
from internal.pkg.metrics import FAST, GROUP_LABELS, METRIC_NAMES, OTHER_GROUP, Metrics
from tests.orders import order_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented() -> list[str]:
    return re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)


def exported(metrics: Metrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return set(re.findall(r"^# TYPE ([a-z0-9_]+) ", text, flags=re.MULTILINE))


def test_docs_list_exactly_the_metrics_of_the_code() -> None:
    assert documented() == list(METRIC_NAMES)


def test_every_listed_metric_is_registered() -> None:
    metrics = Metrics("test")
    metrics.watch_cache(OrderCache(10, 10_000, 1_000).stats)
    metrics.watch_partitions(lambda: [("orders", 0, False)])
    names = exported(metrics)
    assert set(METRIC_NAMES) <= names


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_a_report_moves_outcomes_dead_letters_sizes_and_ages() -> None:
    metrics = Metrics("test")
    outcomes = list(Outcome)
    batch = tuple(Inbound("t", 0, i, None, b"", (), 1_000_000, 1) for i in range(len(outcomes)))
    ReportMetrics(metrics, clock_ms=lambda: 1_002_500)(BatchReport(batch, tuple(outcomes), 0.25))
    for outcome in outcomes:
        assert value(metrics, "consumer_messages_total", outcome=outcome.value) == 1
        expected = 1 if outcome.dead_lettered else 0
        assert value(metrics, "dlq_messages_total", reason=outcome.value) == expected
    assert value(metrics, "dlq_truncated_letters_total") == 0
    assert value(metrics, "consumer_batch_size_sum") == len(outcomes)
    assert value(metrics, "consumer_batch_duration_seconds_sum") == 0.25
    assert value(metrics, "consumer_message_age_seconds_sum") == 2.5 * len(outcomes)
    assert value(metrics, "consumer_order_freshness_seconds_count") == 0  # nothing was stored


def test_freshness_counts_stored_orders_only_up_to_their_commit() -> None:
    metrics = Metrics("test", freshness_objective_s=0.25)
    outcomes = (Outcome.STORED, Outcome.DUPLICATE, Outcome.INVALID, Outcome.STORED)
    sent_ms = (1_000_000, 1_000_000, 1_000_000, 1_000_040)
    batch = tuple(Inbound("t", 0, i, None, b"", (), ts, 1) for i, ts in enumerate(sent_ms))
    report = BatchReport(batch, outcomes, 0.05, stored_at_ms=1_000_030)  # the second stored: -10 ms
    ReportMetrics(metrics, clock_ms=lambda: 1_009_000)(report)  # the report is taken later: not counted
    assert value(metrics, "consumer_order_freshness_seconds_count") == 2
    assert value(metrics, "consumer_order_freshness_seconds_sum") == 0.03  # 30 ms, and 0 for the clock skew
    assert value(metrics, "consumer_order_freshness_seconds_bucket", le="0.05") == 2
    assert value(metrics, "consumer_freshness_objective_seconds") == 0.25


def test_a_distribution_counts_a_batch_like_a_histogram_counts_one_value_at_a_time() -> None:
    """Observations on the bounds, between them, past the last and at zero, in batches of any size
    (an empty one too): the exposition is the one prometheus_client's Histogram gives."""
    values = [0.0, 0.005, 0.0051, 0.1, 0.3, 2.0, 1000.0, 0.005]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = Distribution("age_seconds", "age", (0.005, 0.1, 1.0))
    ours.register(mine)
    reference = Histogram("age_seconds", "age", buckets=(0.005, 0.1, 1.0), registry=theirs)
    for batch in (values[:3], [], values[3:]):
        mine.observe_many(iter(batch))  # any iterable, consumed once
        for v in batch:
            reference.observe(v)
    for name, labels in [
        *(("age_seconds_bucket", {"le": le}) for le in ("0.005", "0.1", "1.0", "+Inf")),
        ("age_seconds_count", {}),
    ]:
        assert ours.get_sample_value(name, labels) == theirs.get_sample_value(name, labels), (name, labels)
    # Summed a batch at a time, in another order: equal up to rounding.
    assert ours.get_sample_value("age_seconds_sum") == pytest.approx(
        theirs.get_sample_value("age_seconds_sum")
    )
    assert ours.get_sample_value("age_seconds_bucket", {"le": "0.005"}) == 3


def test_lag_comes_from_librdkafka_statistics_and_forgets_revoked_partitions() -> None:
    metrics = Metrics("test")
    lag = LagFromStatistics(metrics, "orders")
    lag(
        '{"topics": {"orders": {"partitions": {'
        '"0": {"fetch_state": "active", "hi_offset": 100, "committed_offset": 90, "lo_offset": 0},'
        '"1": {"fetch_state": "active", "hi_offset": 7, "committed_offset": -1001, "lo_offset": 2},'
        '"2": {"fetch_state": "none", "hi_offset": -1, "committed_offset": -1001},'
        '"-1": {"fetch_state": "none", "hi_offset": -1}}}}}'
    )
    assert value(metrics, "consumer_lag", topic="orders", partition="0") == 10
    assert value(metrics, "consumer_lag", topic="orders", partition="1") == 5  # nothing committed yet
    assert metrics.registry.get_sample_value("consumer_lag", {"topic": "orders", "partition": "2"}) is None
    caught_up = {"fetch_state": "active", "hi_offset": 7, "committed_offset": 7}
    lag(json.dumps({"topics": {"orders": {"partitions": {"1": caught_up}}}}))
    assert metrics.registry.get_sample_value("consumer_lag", {"topic": "orders", "partition": "0"}) is None
    assert value(metrics, "consumer_lag", topic="orders", partition="1") == 0


def test_stuck_partitions_are_exported_at_scrape_time_and_vanish_when_unassigned() -> None:
    metrics = Metrics("test")
    partitions = [("orders", 0, True), ("orders", 4, False)]
    metrics.watch_partitions(lambda: partitions)
    assert value(metrics, "consumer_partition_stuck", topic="orders", partition="0") == 1
    assert value(metrics, "consumer_partition_stuck", topic="orders", partition="4") == 0
    partitions = [("orders", 4, False)]
    assert (
        metrics.registry.get_sample_value("consumer_partition_stuck", {"topic": "orders", "partition": "0"})
        is None
    )


def test_what_the_cache_cannot_keep_is_counted_at_scrape_time() -> None:
    small = OrderRecord.of(Order.model_validate_json(order_bytes(0, items=1)))
    big = OrderRecord.of(Order.model_validate_json(order_bytes(1, items=40)))
    cap = entry_cost(make_entry(small.json)) + 100  # room for the small JSON, not for its page too
    cache = OrderCache(100, 10_000_000, cap)
    metrics = Metrics("test")
    metrics.watch_cache(cache.stats)
    cache.put_many([small, big])
    entry = cache.get(small.uid)
    assert entry is not None
    cache.attach_page(small.uid, entry, b"<p>" + b"x" * 1000)
    assert value(metrics, "cache_oversize_skipped_total") == 1
    assert value(metrics, "cache_pages_not_kept_total") == 1
    assert value(metrics, "cache_entries") == 1


def test_a_report_counts_its_stub_letters() -> None:
    metrics = Metrics("test")
    batch = (Inbound("t", 0, 0, None, b"", (), None, 1),)
    ReportMetrics(metrics)(BatchReport(batch, (Outcome.UNDECODABLE,), 0.1, truncated_letters=1))
    assert value(metrics, "dlq_truncated_letters_total") == 1


def test_the_http_figures_read_like_prometheus_clients_own_counter_and_histogram() -> None:
    ours = Metrics("test")
    theirs = CollectorRegistry()
    requests = Counter("http_requests_total", "x", ["method", "route", "status"], registry=theirs)
    durations = Histogram(
        "http_request_duration_seconds", "x", ["method", "route"], buckets=FAST, registry=theirs
    )
    for seconds, status in [(0.0005, 200), (0.0004, 200), (0.003, 404), (0.25, 200), (7.0, 503)]:
        ours.http.record("GET", "/x", status, seconds)
        requests.labels("GET", "/x", str(status)).inc()
        durations.labels("GET", "/x").observe(seconds)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name.startswith("http_") and not s.name.endswith("_created")
        }

    assert samples(ours.registry) == samples(theirs)


def test_letters_count_by_reason_and_a_bounded_set_of_groups() -> None:
    metrics = Metrics("test")
    groups = [f"invalid · field{i} · unknown field" for i in range(GROUP_LABELS + 5)]
    metrics.count_letters([("invalid", g) for g in groups] + [("invalid", groups[0])], at_s=1234.5)
    assert value(metrics, "dlq_letters_total", reason="invalid", group=groups[0]) == 2
    assert value(metrics, "dlq_letters_total", reason="invalid", group=groups[GROUP_LABELS - 1]) == 1
    assert value(metrics, "dlq_letters_total", reason="invalid", group=groups[GROUP_LABELS]) == 0
    assert value(metrics, "dlq_letters_total", reason="invalid", group=OTHER_GROUP) == 5
    assert value(metrics, "dlq_newest_letter_timestamp_seconds") == 1234.5


def test_lag_counts_commits_the_statistics_never_see() -> None:
    """A transactional commit goes through the producer: the consumer's statistics keep the old
    committed offset, the tracker knows the confirmed one."""
    metrics = Metrics("test")
    commits: dict[tuple[str, int], int] = {}
    lag = LagFromStatistics(metrics, "orders", commits, lambda _t, p: 48 if p == 0 else None)
    lag(
        '{"topics": {"orders": {"partitions": {'
        '"0": {"fetch_state": "active", "hi_offset": 48, "committed_offset": -1001, "lo_offset": 0},'
        '"1": {"fetch_state": "active", "hi_offset": 9, "committed_offset": 4, "lo_offset": 0}}}}}'
    )
    assert value(metrics, "consumer_lag", topic="orders", partition="0") == 0
    assert value(metrics, "consumer_lag", topic="orders", partition="1") == 5
    assert commits == {("orders", 0): 48, ("orders", 1): 4}
