"""Turns the consumer's batch reports and librdkafka's statistics into metrics (internal/pkg/metrics.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from internal.consumer.messages import BatchReport, DeadLetter
from internal.domain.outcomes import Outcome
from internal.pkg.metrics import Metrics

log = structlog.get_logger(component="consumer")


class ReportMetrics:
    """The loop's ``on_report``: outcomes, dead-letters, batch size and time, message age, and the
    freshness of stored orders (measured at the commit, in the worker; observed here)."""

    def __init__(
        self,
        metrics: Metrics,
        clock_ms: Callable[[], float] = lambda: time.time() * 1000,
        *,
        letters_at_commit: bool = False,
    ) -> None:
        self._m = metrics
        self._clock_ms = clock_ms
        # Transactional mode: a batch's letters are not sent yet; LettersCommitted counts them.
        self._count_letters = not letters_at_commit

    def __call__(self, report: BatchReport) -> None:
        m = self._m
        m.batch_size.observe(len(report.messages))
        m.batch_duration.observe(report.duration_s)
        # Counted per batch, not per message: labels() takes a lock and a dict look-up each time.
        for outcome, count in Counter(report.outcomes).items():
            m.messages.labels(outcome.value).inc(count)
            if outcome.dead_lettered and self._count_letters:
                m.dead_letters.labels(outcome.reason.value).inc(count)
        if report.truncated_letters:
            m.truncated_letters.inc(report.truncated_letters)
        now_ms = self._clock_ms()
        # A producer's clock ahead of ours would make an age negative: counted as 0.
        m.message_age.observe_many(
            max(0.0, (now_ms - message.timestamp_ms) / 1000)
            for message in report.messages
            if message.timestamp_ms is not None
        )
        visible_ms = report.stored_at_ms
        if visible_ms is not None:
            m.freshness.observe_many(
                max(0.0, (visible_ms - message.timestamp_ms) / 1000)
                for message, outcome in zip(report.messages, report.outcomes, strict=True)
                if outcome is Outcome.STORED and message.timestamp_ms is not None
            )


class LettersCommitted:
    """The Committer's ``on_committed`` in transactional mode: the letters that just became visible
    (counted and logged now, never at an aborted attempt) and the time the transaction took."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def __call__(self, letters: Sequence[DeadLetter], seconds: float) -> None:
        m = self._m
        m.transaction_commit.observe(seconds)
        for reason, count in Counter(x.reason for x in letters).items():
            m.dead_letters.labels(reason.value).inc(count)
        truncated = sum(1 for x in letters if x.truncated is not None)
        if truncated:
            m.truncated_letters.inc(truncated)
        for letter in letters:  # after the commit: each line is a fact, not an intention
            message = letter.message
            log.warning(
                "dead_lettered",
                reason=letter.reason.value,
                error=letter.error[:300],
                truncated=letter.truncated,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                order_uid=message.key.decode("utf-8", "replace") if message.key else None,
            )


class LagFromStatistics:
    """librdkafka's ``stats_cb`` (every ``statistics.interval.ms``, on the poll thread): per assigned
    partition, consumer_lag = high watermark - committed offset (the whole partition when nothing is
    committed yet). Partitions no longer assigned are removed from the gauge."""

    def __init__(
        self,
        metrics: Metrics,
        topic: str,
        commits: dict[tuple[str, int], int] | None = None,
        confirmed: Callable[[str, int], int | None] = lambda _t, _p: None,
    ) -> None:
        self._m = metrics
        self._topic = topic
        # The commits this consumer confirmed itself (OffsetTracker): a transactional commit goes
        # through the producer, and librdkafka's consumer statistics never see it.
        self._confirmed = confirmed
        self._shown: set[str] = set()
        # Each partition's committed position as last reported, for the stuck detector (partitions
        # not polled yet); written and read on the poll thread only.
        self._commits = commits if commits is not None else {}

    def __call__(self, stats_json: str) -> None:
        try:
            partitions = json.loads(stats_json)["topics"][self._topic]["partitions"]
        except (KeyError, ValueError):
            return  # no data for our topic in this round (e.g. before the first assignment)
        current: set[str] = set()
        reported: dict[tuple[str, int], int] = {}
        for number, p in partitions.items():
            if (
                number == "-1"
                or p.get("fetch_state") in (None, "none", "stopped")
                or p.get("hi_offset", -1) < 0
            ):
                continue
            committed = max(
                p.get("committed_offset", -1001), self._confirmed(self._topic, int(number)) or -1001
            )
            lag = (
                p["hi_offset"] - committed
                if committed >= 0
                else p["hi_offset"] - max(p.get("lo_offset", 0), 0)
            )
            self._m.lag.labels(self._topic, number).set(max(0, lag))
            reported[(self._topic, int(number))] = (
                committed if committed >= 0 else max(p.get("lo_offset", 0), 0)
            )
            current.add(number)
        for gone in self._shown - current:
            self._m.lag.remove(self._topic, gone)
        self._shown = current
        self._commits.clear()
        self._commits.update(reported)
