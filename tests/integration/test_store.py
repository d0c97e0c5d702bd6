"""The batch writer and reader against the real PostgreSQL: atomic, idempotent, set-based."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import datetime

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from internal.consumer.control import Control
from internal.consumer.messages import Inbound
from internal.consumer.processor import BatchProcessor, ProcessingPolicy
from internal.consumer.retry import RetryPolicy
from internal.domain.errors import FatalError, RecordRejected, TimedOut, TransientError
from internal.domain.order import Order
from internal.domain.outcomes import Outcome
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy
from internal.pkg.backoff import Backoff
from internal.store import migrations
from internal.store import reader as reader_module
from internal.store.errors import translate
from internal.store.reader import PostgresOrderReader, StoredOrder
from internal.store.sessions import configure_session
from internal.store.writer import PostgresOrderWriter, insert_new
from tests.orders import order_bytes, order_doc
from tests.support import wait_until
from tests.unit.test_processor import FakeDlq, FakeOutage, FakeSink

pytestmark = pytest.mark.integration


def record(index: int, items: int = 2, **changes: object) -> OrderRecord:
    doc = order_doc(index, items=items)
    doc.update(changes)
    return OrderRecord.of(Order.model_validate_json(json.dumps(doc)))


@pytest.fixture
def db(schema_dsn: str) -> str:
    migrations.apply_pending(schema_dsn)
    return schema_dsn


@pytest.fixture
def pool(db: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(db, min_size=1, max_size=4, timeout=5) as p:
        yield p


def stored(pool: ConnectionPool, uid: str) -> StoredOrder | None:
    """One order read back by uid with the API's query (the service reads by uid in async_reader.py)."""
    with pool.connection() as conn:
        row = conn.execute(reader_module.BY_UIDS, ([uid],)).fetchone()
    return StoredOrder(str(row[0]), str(row[1]).encode()) if row else None


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("orders", "deliveries", "payments", "items")
        }


def test_batch_is_stored_in_all_four_tables_and_reads_back_equal(pool: ConnectionPool, db: str) -> None:
    records = [record(i, items=1 + i % 4) for i in range(50)]
    assert PostgresOrderWriter(pool).write_batch(records) == [Outcome.STORED] * 50
    assert counts(db) == {
        "orders": 50,
        "deliveries": 50,
        "payments": 50,
        "items": sum(1 + i % 4 for i in range(50)),
    }
    for rec in records:
        back = stored(pool, rec.uid)
        assert back is not None
        # every field of the four tables
        assert Order.model_validate_json(back.json) == Order.model_validate_json(rec.json)
        assert back.json == rec.json  # and byte for byte the form the consumer caches
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT order_uid, content_hash FROM orders").fetchall()
    hashes = {str(uid): bytes(digest) for uid, digest in rows}
    # The hashes travel as one bytea, 32 bytes per order: each lands on its own order.
    assert hashes == {rec.uid: rec.content_hash for rec in records}


@pytest.mark.parametrize(
    "changes",
    [
        {"customer_id": 'quote " backslash \\ slash / <script>alert(1)</script>'},
        {"customer_id": "Ünïcödé 名前 emoji 🚚 rtl \u200f\u202e line-sep \u2028 para \u2029 del \u007f"},
        {"date_created": "2021-11-26T09:22:19.123456+03:00"},
        {"date_created": "2021-11-26T06:22:19.5Z"},
        {"internal_signature": ""},
    ],
)
def test_database_json_is_byte_identical_to_the_encoder(
    pool: ConnectionPool, changes: dict[str, str]
) -> None:
    rec = record(50, items=3, **changes)
    PostgresOrderWriter(pool).write_batch([rec])
    back = stored(pool, rec.uid)
    assert back is not None
    assert back.json == rec.json


# date_created as sent: offsets at the edges of real zones, odd ones, RFC 3339's "unknown" -00:00,
# lower-case letters, and fractions of 0 to 9 digits (more than PostgreSQL's microseconds).
SENT_DATES = [
    "2021-11-26T06:22:19Z",
    "2021-11-26T09:22:19+03:00",
    "2021-11-25T20:52:19-09:30",
    "2021-11-26T20:22:19+14:00",
    "2021-11-25T18:22:19-12:00",
    "2021-11-26T12:07:19+05:45",
    "2021-11-26T06:22:19-00:00",
    "2021-11-26t06:22:19z",
    *[f"2021-11-26T09:22:19{'.' + '123456789'[:n] if n else ''}+03:00" for n in range(10)],
    "2021-11-26T06:22:19.000000000Z",
    "2024-02-29T23:59:59.999999999-12:00",  # a leap day, the last nanosecond before the next UTC day
]


def test_date_created_comes_back_as_sent_on_every_path(pool: ConnectionPool, db: str) -> None:
    """The text the producer sent is what the database assembles and what the consumer caches, byte for
    byte; the stored instant is the validator's (fractions past microseconds cut, never rounded)."""
    records = [record(600 + i, items=2, date_created=sent) for i, sent in enumerate(SENT_DATES)]
    assert PostgresOrderWriter(pool).write_batch(records) == [Outcome.STORED] * len(records)
    reader = PostgresOrderReader(pool)
    latest = {o.uid: o.json for o in reader.latest(len(records))}
    with psycopg.connect(db) as conn:
        instants: dict[str, datetime] = dict(
            conn.execute("SELECT order_uid, date_created FROM orders").fetchall()
        )
    for rec, sent in zip(records, SENT_DATES, strict=True):
        back = stored(pool, rec.uid)
        assert back is not None
        assert json.loads(back.json)["date_created"] == sent
        assert back.json == rec.json == latest[rec.uid]
        assert instants[rec.uid] == Order.model_validate_json(rec.json).created_at


def test_the_same_instant_spelt_otherwise_is_a_duplicate_and_the_first_spelling_stays(
    pool: ConnectionPool,
) -> None:
    writer = PostgresOrderWriter(pool)
    first = record(700, date_created="2021-11-26T09:22:19.5+03:00")
    writer.write_batch([first])
    again = record(700, date_created="2021-11-26T06:22:19.500000000Z")
    later = record(700, date_created="2021-11-26T06:22:19.500001Z")
    assert writer.write_batch([again, later]) == [Outcome.DUPLICATE, Outcome.CONFLICT]
    kept = stored(pool, first.uid)
    assert kept is not None
    assert kept.json == first.json


def test_items_json_is_byte_identical_in_their_order_with_odd_text(pool: ConnectionPool) -> None:
    """Items are aggregated by PostgreSQL (array_to_json over rows ordered by position): their text
    fields are escaped like the rest and the list keeps the message's order, not the ids' order."""
    doc = order_doc(51, items=4)
    doc["items"][0]["name"] = 'quote " backslash \\ <b>tag</b> \u2028 🚚'
    doc["items"][2]["brand"] = "Ünïcödé \u007f"
    doc["items"][1]["chrt_id"], doc["items"][3]["chrt_id"] = 1, 999999999  # not sorted by chrt_id
    rec = OrderRecord.of(Order.model_validate_json(json.dumps(doc)))
    PostgresOrderWriter(pool).write_batch([rec])
    back = stored(pool, rec.uid)
    latest = list(PostgresOrderReader(pool).latest(1))
    assert back is not None
    assert back.json == rec.json
    assert [o.json for o in latest] == [rec.json]


def test_rewrite_is_a_duplicate_and_changed_content_a_conflict(pool: ConnectionPool, db: str) -> None:
    writer = PostgresOrderWriter(pool)
    original = record(1)
    writer.write_batch([original])
    changed = record(1, customer_id="someoneelse")
    assert writer.write_batch([original, changed]) == [Outcome.DUPLICATE, Outcome.CONFLICT]
    kept = stored(pool, original.uid)
    assert kept is not None
    assert kept.json == original.json  # first write wins
    assert counts(db)["orders"] == 1


def test_duplicates_inside_one_batch(pool: ConnectionPool, db: str) -> None:
    first, same, other = record(2), record(2), record(2, customer_id="x2")
    assert PostgresOrderWriter(pool).write_batch([first, same, other]) == [
        Outcome.STORED,
        Outcome.DUPLICATE,
        Outcome.CONFLICT,
    ]
    assert counts(db)["orders"] == 1


def test_failure_during_items_insert_leaves_no_part_of_the_batch(pool: ConnectionPool, db: str) -> None:
    bad = record(3)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.rid = %s THEN RAISE EXCEPTION 'item refused'; END IF; RETURN NEW; END $$".replace(
                "%s", f"'{Order.model_validate_json(bad.json).items[1].rid}'"
            )
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION refuse_item()"
        )
    with pytest.raises(RecordRejected):
        PostgresOrderWriter(pool).write_batch([record(4), bad, record(5)])
    assert counts(db) == {"orders": 0, "deliveries": 0, "payments": 0, "items": 0}

    # Through the processor the batch is split: the refused order is dead-lettered, the others stored.
    dlq = FakeDlq()
    processor = BatchProcessor(
        store=PostgresOrderWriter(pool),
        dead_letters=dlq,
        stored_sink=FakeSink(),
        outage=FakeOutage(),
        policy=ProcessingPolicy(ValidationPolicy(), RetryPolicy(Backoff(0.01, 0.1), 2)),
    )
    values = [order_bytes(4), order_bytes(3), order_bytes(5)]
    batch = [Inbound("t", 0, i, None, v, (), None, 1) for i, v in enumerate(values)]
    report = processor.process(batch, Control(lambda: True, lambda _s: None))
    assert report.outcomes == (Outcome.STORED, Outcome.DB_REJECTED, Outcome.STORED)
    assert [letter.reason.value for letter in dlq.sent] == ["db_rejected"]
    assert counts(db) == {"orders": 2, "deliveries": 2, "payments": 2, "items": 4}
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE order_uid = %s", (bad.uid,)).fetchone() == (0,)


def test_writer_racing_another_writer_on_the_same_uid_sees_a_duplicate(pool: ConnectionPool, db: str) -> None:
    rec = record(6)
    results: list[list[Outcome]] = []
    # Another transaction inserts the same uid and holds it uncommitted: our COPY waits on the unique
    # index, fails when the other commits, classifies the batch again and reports a duplicate.
    with psycopg.connect(db, autocommit=True) as other:
        with other.transaction(), other.cursor() as cur:
            insert_new(cur, [rec])
            racer = threading.Thread(
                target=lambda: results.append(PostgresOrderWriter(pool).write_batch([rec]))
            )
            racer.start()
            holder = other.info.backend_pid
            wait_until(
                lambda: _blocked_by(db, holder), timeout_s=10, what="the racing writer to wait on the uid"
            )
        racer.join(timeout=30)
    assert results == [[Outcome.DUPLICATE]]
    assert counts(db)["orders"] == 1


def _blocked_by(dsn: str, holder: int) -> bool:
    """Whether a session waits on a lock of ``holder`` - this test's own transaction, so that other
    sessions on the same server never count."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (holder,)
        ).fetchone()
    return bool(row and row[0] > 0)


def test_unreachable_database_is_transient() -> None:
    with ConnectionPool(
        "postgresql://orders:orders@127.0.0.1:1/orders", min_size=1, timeout=0.5, open=False
    ) as p:
        p.open(wait=False)
        with pytest.raises(TransientError):
            PostgresOrderWriter(p).write_batch([record(8)])


def test_missing_schema_is_fatal(schema_dsn: str) -> None:
    with ConnectionPool(schema_dsn, min_size=1, max_size=1) as p, pytest.raises(FatalError):
        PostgresOrderWriter(p).write_batch([record(9)])


def test_latest_returns_newest_first(pool: ConnectionPool) -> None:
    writer = PostgresOrderWriter(pool)
    for i in range(5):
        writer.write_batch([record(100 + i)])
    latest = [r.uid for r in PostgresOrderReader(pool).latest(3)]
    assert latest == [record(104).uid, record(103).uid, record(102).uid]


@pytest.mark.parametrize("limit", [3, 4, 7, 10, 25])
def test_latest_split_over_two_connections_keeps_newest_first(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(reader_module, "PARALLEL_FROM", 4)  # the two-range read, on a small table
    writer = PostgresOrderWriter(pool)
    uids = []
    for i in range(10):
        writer.write_batch([record(200 + i)])
        uids.append(record(200 + i).uid)
    latest = [r.uid for r in PostgresOrderReader(pool).latest(limit)]
    assert latest == list(reversed(uids))[:limit]


@pytest.mark.parametrize("parallel_from", [1_000, 4], ids=["one-query", "two-connections"])
def test_latest_closed_early_leaves_its_connections_usable(
    db: str, pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch, parallel_from: int
) -> None:
    """The warm-up stops reading at the cache's byte bound: the streamed queries (the older half's
    too, when two connections read) are cancelled and the connections go back to the pool ready
    for the next statement."""
    monkeypatch.setattr(reader_module, "STREAM_ROWS", 2)  # many chunks still unsent when it stops
    monkeypatch.setattr(reader_module, "PARALLEL_FROM", parallel_from)
    PostgresOrderWriter(pool).write_batch([record(300 + i) for i in range(40)])
    newest = [record(339 - i).uid for i in range(40)]
    with ConnectionPool(db, min_size=1, max_size=2, timeout=5, kwargs={"autocommit": True}) as two:
        reader = PostgresOrderReader(two)
        stream = reader.latest(40)
        first = [next(stream).uid for _ in range(3)]
        stream.close()
        assert first == newest[:3]
        assert [r.uid for r in reader.latest(40)] == newest  # the same connections, reused
        assert stored(two, record(300).uid) is not None


@pytest.mark.parametrize("parallel_from", [10_000, 1_000], ids=["one-query", "two-connections"])
def test_latest_is_not_cut_by_the_sessions_request_budget(
    db: str, pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch, parallel_from: int
) -> None:
    """The reader pool's sessions carry a request's statement timeout (2 s by default); the warm-up
    reads thousands of orders in one statement, under a budget of its own."""
    monkeypatch.setattr(reader_module, "PARALLEL_FROM", parallel_from)
    writer = PostgresOrderWriter(pool)
    for start in range(0, 3000, 500):
        writer.write_batch([record(1000 + i, items=3) for i in range(start, start + 500)])
    with ConnectionPool(
        db, min_size=1, max_size=2, timeout=5, kwargs={"autocommit": True},
        configure=lambda conn: configure_session(conn, 20),  # 20 ms: far below reading 3,000 orders
    ) as reader_pool:  # fmt: skip
        read = [r.uid for r in PostgresOrderReader(reader_pool).latest(3000)]
        with reader_pool.connection() as conn:
            timeout = conn.execute("SHOW statement_timeout").fetchone()
    assert read == [record(3999 - i, items=3).uid for i in range(3000)]
    assert timeout == ("20ms",)  # the warm-up's own budget did not outlive its transaction


def test_closing_latest_early_stops_the_older_half_too(
    db: str, pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the two-connection read is closed early (the cache's byte bound), the helper reading the
    older half stops at its next row instead of reading all of it into memory."""
    monkeypatch.setattr(reader_module, "STREAM_ROWS", 2)
    monkeypatch.setattr(reader_module, "PARALLEL_FROM", 4)
    PostgresOrderWriter(pool).write_batch([record(400 + i) for i in range(40)])
    original = PostgresOrderReader._stream
    older_rows: list[str] = []
    first_older_row = threading.Event()

    def observed(
        self: PostgresOrderReader,
        statement: str,
        params: tuple[int, ...],
        stop: threading.Event | None = None,
    ) -> Iterator[StoredOrder]:
        if stop is None:  # the newer half, read by the caller
            yield from original(self, statement, params)
            return
        for order in original(self, statement, params, stop):
            older_rows.append(order.uid)
            first_older_row.set()
            yield order
            assert stop.wait(30), "closing the read never told the older half to stop"

    monkeypatch.setattr(PostgresOrderReader, "_stream", observed)
    with ConnectionPool(db, min_size=1, max_size=2, timeout=5, kwargs={"autocommit": True}) as two:
        reader = PostgresOrderReader(two)
        with closing(reader.latest(40)) as stream:  # closed even when an assertion fails first
            first = [next(stream).uid for _ in range(3)]
            assert first_older_row.wait(10), "the older half never started"
        assert first == [record(439).uid, record(438).uid, record(437).uid]
        assert older_rows == [record(419).uid]  # one row of its twenty, then it stopped
        with two.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_program_limit_is_a_record_rejection_that_splits_the_batch(pool: ConnectionPool, db: str) -> None:
    # A real class-54 error of PostgreSQL (psycopg gives each 54xxx its own OperationalError subclass).
    with psycopg.connect(db) as conn, pytest.raises(psycopg.OperationalError) as caught:
        conn.execute("SELECT repeat('x', 1073741824)")  # "requested length too large", 54000
    assert isinstance(translate(caught.value), RecordRejected)
    bad = record(61)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION too_complex() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.order_uid = '{bad.uid}' THEN"
            " RAISE EXCEPTION 'statement too complex' USING ERRCODE = '54001'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER limit_it BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION too_complex()"
        )
    with pytest.raises(RecordRejected):  # not TransientError: it would be retried whole forever
        PostgresOrderWriter(pool).write_batch([record(60), bad])
    dlq = FakeDlq()
    processor = BatchProcessor(
        store=PostgresOrderWriter(pool),
        dead_letters=dlq,
        stored_sink=FakeSink(),
        outage=FakeOutage(),
        policy=ProcessingPolicy(ValidationPolicy(), RetryPolicy(Backoff(0.01, 0.1), 2)),
    )
    batch = [Inbound("t", 0, i, None, order_bytes(n), (), None, 1) for i, n in enumerate((60, 61, 62))]
    report = processor.process(batch, Control(lambda: True, lambda _s: None))
    assert report.outcomes == (Outcome.STORED, Outcome.DB_REJECTED, Outcome.STORED)
    assert "StatementTooComplex" in dlq.sent[0].error


class Recording(PostgresOrderWriter):
    """The real writer, remembering the size of every batch it was asked to write."""

    sizes: list[int]

    def write_batch(self, records: Sequence[OrderRecord]) -> list[Outcome]:
        self.sizes.append(len(records))
        return super().write_batch(records)


def test_statement_timeouts_split_the_batch_and_a_lock_still_ends_with_everything_stored(db: str) -> None:
    timeout_ms = 200
    with ConnectionPool(
        db,
        min_size=1,
        max_size=2,
        kwargs={"autocommit": True},
        configure=lambda c: configure_session(c, timeout_ms),
        timeout=5,
    ) as slow_pool:
        writer = Recording(slow_pool)
        writer.sizes = []
        with psycopg.connect(db) as locker:
            locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(TimedOut):
                writer.write_batch([record(70)])
        locker_ready = threading.Event()

        def hold_lock_for_a_while() -> None:
            with psycopg.connect(db) as conn:
                conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                locker_ready.set()
                wait_until(lambda: len(writer.sizes) >= 5, timeout_s=30, what="the batch to be split")

        holder = threading.Thread(target=hold_lock_for_a_while)
        holder.start()
        locker_ready.wait(10)
        writer.sizes = []
        processor = BatchProcessor(
            store=writer,
            dead_letters=FakeDlq(),
            stored_sink=FakeSink(),
            outage=FakeOutage(),
            policy=ProcessingPolicy(ValidationPolicy(), RetryPolicy(Backoff(0.01, 0.05), 2)),
        )
        batch = [Inbound("t", 0, i, None, order_bytes(80 + i), (), None, 1) for i in range(4)]
        report = processor.process(batch, Control(lambda: True, time.sleep))
        holder.join(30)
    assert report.outcomes == (Outcome.STORED,) * 4  # nothing dead-lettered, nothing lost
    assert writer.sizes[:2] == [4, 4]  # max_attempts of the whole batch, then its halves
    assert writer.sizes[2] == 2
    assert counts(db)["orders"] == 4


def test_an_unknown_database_error_is_bounded_not_retried_as_an_outage(pool: ConnectionPool, db: str) -> None:
    bad = record(90)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION internal_error() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.order_uid = '{bad.uid}' THEN RAISE EXCEPTION 'odd' USING ERRCODE = 'XX000'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER odd BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION internal_error()"
        )
    with pytest.raises(psycopg.errors.InternalError_):  # as it is: neither transient nor a rejection
        PostgresOrderWriter(pool).write_batch([bad])
    outage, dlq = FakeOutage(), FakeDlq()
    processor = BatchProcessor(
        store=PostgresOrderWriter(pool),
        dead_letters=dlq,
        stored_sink=FakeSink(),
        outage=outage,
        policy=ProcessingPolicy(ValidationPolicy(), RetryPolicy(Backoff(0.01, 0.02), 2)),
    )
    batch = [Inbound("t", 0, i, None, order_bytes(n), (), None, 1) for i, n in enumerate((89, 90))]
    report = processor.process(batch, Control(lambda: True, lambda _s: None))
    assert report.outcomes == (Outcome.STORED, Outcome.PROCESSING_ERROR)
    assert dlq.sent[0].error.startswith("InternalError_: odd")
    assert outage.started == 0  # never treated as an outage
