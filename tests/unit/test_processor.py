"""The consumer's decision table (docs/consumer.md), row by row, with fakes for every seam.

The real store, dead-letter topic and Kafka are proven by tests/integration and tests/e2e; here each
row is isolated so that a failure names exactly the broken rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from internal.consumer.control import Abandoned, Control
from internal.consumer.drift import DriftGuard, DriftPolicy
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.consumer.ports import DriftWatch, LetterIndex, LettersPending
from internal.consumer.processor import BatchProcessor, ProcessingPolicy
from internal.consumer.retry import RetryPolicy
from internal.domain.causes import Cause
from internal.domain.errors import FatalError, RecordRejected, TimedOut, TransientError
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy
from internal.pkg.backoff import Backoff
from tests.orders import encode, order_bytes, order_doc

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class FakeStore:
    """First write wins by uid and content hash, like the real writer; ``script`` injects failures."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.script: list[BaseException] = []
        self.reject_uids: set[str] = set()
        self.explode_uids: set[str] = set()
        self.batch_sizes: list[int] = []

    def write_batch(self, records: Sequence[OrderRecord]) -> list[Outcome]:
        self.batch_sizes.append(len(records))
        if self.script:
            raise self.script.pop(0)
        if any(r.uid in self.reject_uids for r in records):
            raise RecordRejected("check constraint violated")
        if any(r.uid in self.explode_uids for r in records):
            raise ZeroDivisionError("bug")
        results = []
        for record in records:
            known = self.rows.get(record.uid)
            if known is None:
                self.rows[record.uid] = record.content_hash
                results.append(Outcome.STORED)
            else:
                results.append(Outcome.DUPLICATE if known == record.content_hash else Outcome.CONFLICT)
        return results


class FakeDlq:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.failures = 0

    def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        if self.failures:
            self.failures -= 1
            raise TransientError("broker down")
        self.sent.extend(letters)
        return list(letters)


class FakeSink:
    def __init__(self) -> None:
        self.received: list[str] = []

    def put_many(self, records: Sequence[OrderRecord]) -> None:
        self.received.extend(r.uid for r in records)


class FakeOutage:
    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.retries = 0
        self.causes: list[Cause] = []

    def outage_started(self, cause: Cause) -> None:
        self.started += 1
        self.causes.append(cause)

    def outage_ended(self) -> None:
        self.ended += 1

    def retrying(self) -> None:
        self.retries += 1


class Harness:
    def __init__(self) -> None:
        self.store, self.dlq, self.sink, self.outage = FakeStore(), FakeDlq(), FakeSink(), FakeOutage()
        self.sleeps: list[float] = []
        self.wanted = True
        self.processor = self.build()

    def build(self, drift: DriftWatch | None = None, index: LetterIndex | None = None) -> BatchProcessor:
        return BatchProcessor(
            store=self.store,
            dead_letters=self.dlq,
            stored_sink=self.sink,
            outage=self.outage,
            policy=ProcessingPolicy(
                ValidationPolicy(max_message_bytes=50_000), RetryPolicy(Backoff(0.1, 1.0), 3)
            ),
            clock=lambda: NOW,
            drift=drift,
            letter_index=index,
        )

    def run(self, *values: bytes | None) -> list[Outcome]:
        return list(self.report(*values).outcomes)

    def report(self, *values: bytes | None) -> BatchReport:
        batch = [
            Inbound("orders", 0, i, b"k", v, (("h", b"1"),), 1_700_000_000_000, 1)
            for i, v in enumerate(values)
        ]
        control = Control(lambda: self.wanted, self.sleeps.append)
        return self.processor.process(batch, control)

    def reasons(self) -> list[str]:
        return [letter.reason.value for letter in self.dlq.sent]


def uid_of(value: bytes) -> str:
    uid: str = json.loads(value)["order_uid"]
    return uid


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_valid_new_order_is_stored_and_fed_to_the_cache(h: Harness) -> None:
    value = order_bytes(1)
    assert h.run(value) == [Outcome.STORED]
    assert h.sink.received == [uid_of(value)]
    assert h.dlq.sent == []


def test_the_report_says_when_the_stored_orders_became_visible(h: Harness) -> None:
    report = h.report(order_bytes(1), b"not json")
    assert report.stored_at_ms == NOW.timestamp() * 1000  # the clock read after the cache was fed
    assert h.report(b"not json").stored_at_ms is None  # nothing stored, nothing to be fresh


@pytest.mark.parametrize("value", [b"\xff\xfe not utf-8", b'{"order_uid": "abc"', b"", None, b"x" * 60_000])
def test_undecodable_goes_to_the_dlq_as_undecodable(h: Harness, value: bytes | None) -> None:
    assert h.run(value) == [Outcome.UNDECODABLE]
    assert h.reasons() == ["undecodable"]
    assert h.store.batch_sizes == []  # nothing reached the database


def test_invalid_goes_to_the_dlq_with_all_violations(h: Harness) -> None:
    doc = order_doc(2)
    doc["delivery"]["phone"] = "12"
    doc["items"][0]["sale"] = 300
    assert h.run(encode(doc)) == [Outcome.INVALID]
    (letter,) = h.dlq.sent
    assert letter.reason is DeadLetterReason.INVALID
    assert "delivery.phone" in letter.error
    assert "items[0].sale" in letter.error
    assert letter.message.value == encode(doc)  # the original bytes, unchanged


def test_same_uid_same_content_is_a_duplicate_without_dead_letter(h: Harness) -> None:
    value = order_bytes(3)
    h.run(value)
    assert h.run(value) == [Outcome.DUPLICATE]
    assert h.dlq.sent == []
    assert h.sink.received == [uid_of(value)]  # only the first write reached the cache


def test_same_uid_other_content_is_a_conflict_and_the_stored_order_stays(h: Harness) -> None:
    first = order_doc(4)
    h.run(encode(first))
    stored_hash = h.store.rows[first["order_uid"]]
    second = order_doc(4)
    second["delivery"]["city"] = "Elsewhere"
    assert h.run(encode(second)) == [Outcome.CONFLICT]
    assert h.reasons() == ["conflict"]
    assert "different content" in h.dlq.sent[0].error
    assert h.store.rows[first["order_uid"]] == stored_hash


def test_transient_db_error_is_retried_with_backoff_and_nothing_dead_lettered(h: Harness) -> None:
    h.store.script = [TransientError("connection refused"), TransientError("connection refused")]
    value = order_bytes(5)
    assert h.run(value) == [Outcome.STORED]
    assert h.dlq.sent == []
    assert len(h.sleeps) == 2
    assert 0.05 <= h.sleeps[0] <= 0.1
    assert 0.1 <= h.sleeps[1] <= 0.2
    assert (h.outage.started, h.outage.ended) == (1, 1)  # partitions paused once, resumed once
    assert h.outage.retries == 2


def test_permanent_rejection_isolates_the_record_and_stores_the_rest(h: Harness) -> None:
    values = [order_bytes(i) for i in range(10, 18)]
    h.store.reject_uids = {uid_of(values[5])}
    outcomes = h.run(*values)
    assert outcomes == [Outcome.STORED] * 5 + [Outcome.DB_REJECTED] + [Outcome.STORED] * 2
    assert h.reasons() == ["db_rejected"]
    assert set(h.store.rows) == {uid_of(v) for i, v in enumerate(values) if i != 5}
    assert len(h.store.batch_sizes) <= 1 + 2 * 3  # halving: log2(8) rounds, not one call per record


def test_dead_letter_publish_failure_is_retried_before_finishing(h: Harness) -> None:
    h.dlq.failures = 2
    assert h.run(b"garbage") == [Outcome.UNDECODABLE]
    assert h.reasons() == ["undecodable"]
    assert len(h.sleeps) == 2


def test_unexpected_error_is_retried_then_dead_lettered_as_processing_error(h: Harness) -> None:
    values = [order_bytes(i) for i in range(20, 24)]
    h.store.explode_uids = {uid_of(values[2])}
    outcomes = h.run(*values)
    assert outcomes == [Outcome.STORED, Outcome.STORED, Outcome.PROCESSING_ERROR, Outcome.STORED]
    (letter,) = h.dlq.sent
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert letter.attempts == 5  # max_attempts for the batch of 4, then one for its half, one alone


def test_a_passing_unexpected_error_is_retried_and_stored(h: Harness) -> None:
    h.store.script = [RuntimeError("glitch")]
    assert h.run(order_bytes(30)) == [Outcome.STORED]
    assert h.dlq.sent == []


def test_shutdown_during_an_outage_abandons_the_batch(h: Harness) -> None:
    h.store.script = [TransientError("db down")] * 5

    def stop_after_first_sleep(delay: float) -> None:
        h.sleeps.append(delay)
        h.wanted = False

    with pytest.raises(Abandoned):
        h.processor.process(
            [Inbound("orders", 0, 0, None, order_bytes(31), (), None, 1)],
            Control(lambda: h.wanted, stop_after_first_sleep),
        )
    assert h.dlq.sent == []
    assert h.sink.received == []
    assert (h.outage.started, h.outage.ended) == (1, 1)


def test_fatal_error_stops_the_batch(h: Harness) -> None:
    h.store.script = [FatalError("relation orders does not exist", cause=Cause.DATABASE_UNUSABLE)]
    with pytest.raises(FatalError):
        h.run(order_bytes(32))
    assert h.dlq.sent == []


def test_mixed_batch_keeps_outcomes_in_message_order(h: Harness) -> None:
    stored_before = order_bytes(40)
    h.run(stored_before)
    bad = order_doc(41)
    bad["sm_id"] = "99"
    outcomes = h.run(order_bytes(42), b"{", encode(bad), stored_before, order_bytes(43))
    assert outcomes == [
        Outcome.STORED,
        Outcome.UNDECODABLE,
        Outcome.INVALID,
        Outcome.DUPLICATE,
        Outcome.STORED,
    ]
    assert h.reasons() == ["undecodable", "invalid"]


class PartialDlq(FakeDlq):
    """Acknowledges only the first letter of each call; the rest come back pending."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        self.calls.append([letter.message.offset for letter in letters])
        self.sent.append(letters[0])
        first = replace(letters[0], truncated="MSG_SIZE_TOO_LARGE")  # each delivered as a stub
        if len(letters) > 1:
            raise LettersPending("1 acknowledged", letters[1:], delivered=[first])
        return [first]


def test_a_retry_sends_only_the_letters_not_yet_acknowledged(h: Harness) -> None:
    dlq = PartialDlq()
    h.dlq = h.processor._dlq = dlq
    batch = [Inbound("orders", 0, i, None, v, (), None, 1) for i, v in enumerate((b"a", b"b", b"c"))]
    report = h.processor.process(batch, Control(lambda: True, h.sleeps.append))
    assert report.outcomes == (Outcome.UNDECODABLE,) * 3
    assert dlq.calls == [[0, 1, 2], [1, 2], [2]]
    assert [letter.message.offset for letter in dlq.sent] == [0, 1, 2]  # each letter exactly once
    assert report.truncated_letters == 3  # the ones acknowledged in failing attempts are counted too


def test_stub_letters_are_counted_in_the_report(h: Harness) -> None:
    class StubbingDlq(FakeDlq):
        def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
            return [replace(letter, truncated="MSG_SIZE_TOO_LARGE") for letter in super().send(letters)]

    h.processor._dlq = StubbingDlq()
    batch = [Inbound("orders", 0, 0, None, b"x" * 60_000, (), None, 1)]
    report = h.processor.process(batch, Control(lambda: True, h.sleeps.append))
    assert report.outcomes == (Outcome.UNDECODABLE,)
    assert report.truncated_letters == 1


def test_an_unexpected_error_of_the_dead_letter_sink_is_bounded_then_fatal(h: Harness) -> None:
    class BrokenDlq(FakeDlq):
        calls = 0

        def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
            BrokenDlq.calls += 1
            raise TypeError("a header that cannot be encoded")

    h.processor._dlq = BrokenDlq()
    with pytest.raises(FatalError, match="dead-lettering failed 3 times unexpectedly"):
        h.run(b"garbage")
    assert BrokenDlq.calls == 3  # max_attempts, never forever
    assert len(h.sleeps) == 2  # backing off between the attempts


def test_a_permanent_refusal_of_even_a_stub_is_fatal_and_not_retried(h: Harness) -> None:
    class RefusingDlq(FakeDlq):
        calls = 0

        def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
            RefusingDlq.calls += 1
            raise FatalError("refuses even a stub letter", cause=Cause.DEAD_LETTER_REFUSED)

    h.processor._dlq = RefusingDlq()
    with pytest.raises(FatalError):
        h.run(b"garbage")
    assert RefusingDlq.calls == 1


def test_a_timed_out_batch_is_split_after_the_bounded_attempts(h: Harness) -> None:
    values = [order_bytes(i) for i in range(50, 54)]
    h.store.script = [TimedOut("statement timeout")] * 3  # the whole batch times out three times
    assert h.run(*values) == [Outcome.STORED] * 4
    assert h.store.batch_sizes == [4, 4, 4, 2, 2]  # then its halves go through


def test_only_timeouts_count_towards_splitting_a_batch(h: Harness) -> None:
    values = [order_bytes(i) for i in range(56, 58)]
    refused: list[BaseException] = [TransientError("connection refused")] * 2
    h.store.script = [*refused, TimedOut("statement timeout")]
    assert h.run(*values) == [Outcome.STORED] * 2
    assert h.store.batch_sizes == [2, 2, 2, 2]  # two refused connections and one timeout: not split


def test_a_single_message_that_times_out_keeps_being_retried(h: Harness) -> None:
    h.store.script = [TimedOut("statement timeout")] * 7  # more than max_attempts: still transient
    assert h.run(order_bytes(55)) == [Outcome.STORED]
    assert h.store.batch_sizes == [1] * 8
    assert h.dlq.sent == []
    assert (h.outage.started, h.outage.ended) == (1, 1)


def test_a_program_limit_splits_at_once_and_dead_letters_the_record_alone(h: Harness) -> None:
    values = [order_bytes(i) for i in range(60, 64)]
    h.store.reject_uids = {uid_of(values[1])}  # RecordRejected, as a class-54 error is translated
    assert h.run(*values) == [Outcome.STORED, Outcome.DB_REJECTED, Outcome.STORED, Outcome.STORED]
    assert h.store.batch_sizes[0] == 4
    assert h.store.batch_sizes.count(4) == 1


def test_an_unexpected_error_letter_names_the_class_and_a_bounded_message(h: Harness) -> None:
    value = order_bytes(70)
    h.store.explode_uids = {uid_of(value)}
    assert h.run(value) == [Outcome.PROCESSING_ERROR]
    (letter,) = h.dlq.sent
    assert letter.error.startswith("ZeroDivisionError: bug")
    assert len(h.sleeps) == 2  # two pauses between the three attempts


def test_stored_halves_are_not_written_again_when_the_other_half_fails(h: Harness) -> None:
    values = [order_bytes(i) for i in range(80, 84)]
    h.store.explode_uids = {uid_of(values[3])}
    h.run(*values)
    written = list(h.store.rows)
    assert written == [uid_of(v) for v in values[:3]]
    # 3 attempts of 4, then [2 ok], one of the failing [2], then [1 ok], one of the failing [1]
    assert h.store.batch_sizes == [4, 4, 4, 2, 2, 1, 1]


def test_a_batch_that_always_fails_is_isolated_in_about_2n_attempts(h: Harness) -> None:
    values = [order_bytes(i) for i in range(100, 116)]
    h.store.explode_uids = {uid_of(v) for v in values}  # a bug that hits every record
    assert h.run(*values) == [Outcome.PROCESSING_ERROR] * 16
    assert len(h.store.batch_sizes) == 3 + 2 * 16 - 2  # max_attempts for the whole, then one per part
    assert len(h.sleeps) == 2  # backoff only between the whole batch's attempts


def test_a_cache_feed_that_raises_does_not_undo_the_batch(h: Harness) -> None:
    class BrokenSink(FakeSink):
        def put_many(self, records: Sequence[OrderRecord]) -> None:
            raise RuntimeError("cache bug")

    h.processor._sink = BrokenSink()
    assert h.run(order_bytes(90)) == [Outcome.STORED]


# ---- the console's read model and the drift guard ------------------------------------------------
class FakeIndex:
    def __init__(self) -> None:
        self.recorded: list[DeadLetter] = []
        self.failures = 0

    def record(self, letters: Sequence[DeadLetter]) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("database down")
        self.recorded.extend(letters)


def with_parts(h: Harness, drift: DriftGuard | None = None) -> FakeIndex:
    index = FakeIndex()
    h.processor = h.build(drift, index)
    return index


def with_field(index: int, name: str = "loyalty_tier") -> bytes:
    doc = order_doc(index)
    doc[name] = "gold"
    return encode(doc)


def test_letters_carry_their_group_and_are_indexed_after_the_acknowledgement(h: Harness) -> None:
    index = with_parts(h)
    index.failures = 2  # the database blinks: retried, as idempotent
    h.run(order_bytes(1), with_field(2), b"{nope")
    assert [letter.group for letter in h.dlq.sent] == [
        "invalid · loyalty_tier · unknown field",
        "undecodable · not JSON",
    ]
    assert index.recorded == h.dlq.sent
    assert h.outage.started == h.outage.ended == 1


def test_a_trip_holds_the_batch_until_resumed_and_nothing_is_dead_lettered_meanwhile(h: Harness) -> None:
    drift = DriftGuard(DriftPolicy(window=10, ratio=0.9))
    index = with_parts(h, drift)
    assert h.run(*(order_bytes(i) for i in range(5))) == [Outcome.STORED] * 5
    held_sleeps: list[float] = []

    def resume_after_a_while(seconds: float) -> None:
        held_sleeps.append(seconds)
        if len(held_sleeps) == 3:
            assert h.dlq.sent == []  # held: not one letter of the tripping batch went out
            drift.resume("test")

    batch = [Inbound("orders", 0, 10 + i, b"k", with_field(10 + i), (), None, 1) for i in range(10)]
    report = h.processor.process(batch, Control(lambda: True, resume_after_a_while))
    assert len(held_sleeps) == 3
    assert h.outage.causes == [Cause.DEAD_LETTER_DRIFT]  # partitions paused, readiness says why
    assert h.outage.ended == 1
    assert len(h.dlq.sent) == 10  # resumed: the held batch goes on from where it paused
    assert len(index.recorded) == 10
    assert list(report.outcomes) == [Outcome.INVALID] * 10


def test_a_held_batch_is_abandoned_by_a_stop(h: Harness) -> None:
    drift = DriftGuard(DriftPolicy(window=4, ratio=1.0))
    with_parts(h, drift)
    h.wanted = False
    with pytest.raises(Abandoned):
        h.run(*(with_field(i) for i in range(4)))
    assert h.dlq.sent == []  # its offsets are not committed: delivered again after the restart
