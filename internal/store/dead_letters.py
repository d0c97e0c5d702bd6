"""The read model of the dead-letter topic: what the operator's console counts, lists and filters.

The consumer records every letter here once the broker acknowledged it (``DeadLetterIndex.record``,
one statement per batch): ``INSERT ... ON CONFLICT DO NOTHING`` on the letter's origin (topic,
partition, offset), so a letter sent twice - a crash between the acknowledgement and the commit - is
one row, and the same statement adds only the new rows to their group's counts in
``dead_letter_groups`` (sql/0005). Rows hold bounded facts (the group key, the order uid, the error
cut to ``ERROR_CHARS``), never the value: a letter's page fetches that one letter from Kafka by its
dead-letter partition and offset.

``DeadLetterQueries`` answers the console on the event loop. The unfiltered group view reads
``dead_letter_groups`` (a row per group, whatever the topic holds); a view filtered by partition or
time aggregates the matching rows through an index. Letter lists are keyset pages, newest first, on
(failed_at, origin topic, partition, offset), each an index range scan that stops after a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.domain.errors import TransientError
from internal.store.errors import translate

ERROR_CHARS = 1000  # of the error text kept per letter; the letter itself has it whole
UID_CHARS = 256
MAX_GROUPS = 200  # listed at most on one page; a hostile producer can make many (unknown fields)

RECORD = """
WITH rows AS (
    SELECT * FROM unnest(%(topics)s::text[], %(partitions)s::integer[], %(offsets)s::bigint[],
                         %(dlq_topics)s::text[], %(dlq_partitions)s::integer[], %(dlq_offsets)s::bigint[],
                         %(reasons)s::text[], %(groups)s::text[], %(uids)s::text[],
                         %(failed)s::timestamptz[], %(errors)s::text[], %(stubs)s::boolean[],
                         %(sizes)s::integer[])
           AS r (origin_topic, origin_partition, origin_offset, dlq_topic, dlq_partition, dlq_offset,
                 reason, group_key, order_uid, failed_at, error, is_stub, value_bytes)
), new AS (
    INSERT INTO dead_letters SELECT * FROM rows
        ON CONFLICT DO NOTHING
    RETURNING *
), groups AS (
    INSERT INTO dead_letter_groups AS g
    SELECT DISTINCT ON (group_key) group_key, reason,
           count(*) OVER w, min(failed_at) OVER w, max(failed_at) OVER w,
           origin_topic, origin_partition, origin_offset, error
      FROM new
    WINDOW w AS (PARTITION BY group_key)
     ORDER BY group_key, failed_at DESC
        ON CONFLICT (group_key) DO UPDATE
       SET letters = g.letters + excluded.letters,
           first_seen = least(g.first_seen, excluded.first_seen),
           last_seen = greatest(g.last_seen, excluded.last_seen)
)
SELECT count(*) FROM new
"""
# Rows sorted by group key above: two workers adding to the same groups lock them in one order.

COLUMNS = (
    "origin_topic, origin_partition, origin_offset, dlq_topic, dlq_partition, dlq_offset, reason, "
    "group_key, order_uid, failed_at, error, is_stub, value_bytes"
)
KEYSET = "(failed_at, origin_topic, origin_partition, origin_offset)"
NEWEST_FIRST = "failed_at DESC, origin_topic DESC, origin_partition DESC, origin_offset DESC"


@dataclass(frozen=True, slots=True)
class LetterRow:
    """One letter as the read model knows it."""

    origin_topic: str
    origin_partition: int
    origin_offset: int
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    reason: str
    group_key: str
    order_uid: str | None
    failed_at: datetime
    error: str
    is_stub: bool
    value_bytes: int

    @property
    def origin(self) -> tuple[str, int, int]:
        return (self.origin_topic, self.origin_partition, self.origin_offset)


@dataclass(frozen=True, slots=True)
class GroupRow:
    group_key: str
    reason: str
    letters: int
    first_seen: datetime
    last_seen: datetime
    sample: tuple[str, int, int]  # a letter of the group, by origin
    sample_error: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of letters continues: strictly older than this letter."""

    failed_at: datetime
    origin_topic: str
    origin_partition: int
    origin_offset: int

    @classmethod
    def after(cls, row: LetterRow) -> Cursor:
        return cls(row.failed_at, row.origin_topic, row.origin_partition, row.origin_offset)


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """The console's filters; an empty field does not filter."""

    reason: str | None = None
    group_key: str | None = None
    partition: int | None = None  # the ORIGIN partition
    since: datetime | None = None  # failed_at >= since
    until: datetime | None = None  # failed_at < until

    @property
    def narrows_rows(self) -> bool:
        """True when the group counts must be computed from the rows (not the per-group table)."""
        return self.partition is not None or self.since is not None or self.until is not None

    def where(self, table: str | None = None) -> tuple[sql.Composable, list[Any]]:
        """The condition (columns of ``table`` when given) and its parameters."""
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for column, op, value in (
            ("reason", "=", self.reason),
            ("group_key", "=", self.group_key),
            ("origin_partition", "=", self.partition),
            ("failed_at", ">=", self.since),
            ("failed_at", "<", self.until),
        ):
            if value is not None:
                name = sql.Identifier(table, column) if table else sql.Identifier(column)
                parts.append(sql.SQL("{} {} %s").format(name, sql.SQL(op)))
                params.append(value)
        return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")), params


def bounded(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")  # PostgreSQL's text refuses NUL
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DeadLetterIndex:
    """The consumer's side: records acknowledged letters (sync, on a worker thread)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, rows: Sequence[LetterRow]) -> int:
        """Add the letters not recorded yet, in one transaction; returns how many were new.
        Raises ``TransientError`` while the database is away (the caller retries: it is idempotent)."""
        if not rows:
            return 0
        params = {
            "topics": [r.origin_topic for r in rows],
            "partitions": [r.origin_partition for r in rows],
            "offsets": [r.origin_offset for r in rows],
            "dlq_topics": [r.dlq_topic for r in rows],
            "dlq_partitions": [r.dlq_partition for r in rows],
            "dlq_offsets": [r.dlq_offset for r in rows],
            "reasons": [r.reason for r in rows],
            "groups": [r.group_key for r in rows],
            "uids": [bounded(r.order_uid, UID_CHARS) for r in rows],
            "failed": [r.failed_at for r in rows],
            "errors": [bounded(r.error, ERROR_CHARS) for r in rows],
            "stubs": [r.is_stub for r in rows],
            "sizes": [r.value_bytes for r in rows],
        }
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                # One statement: one transaction on the pool's autocommit connection.
                cur.execute(RECORD, params)
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc) or TransientError(f"dead-letter index: {exc}") from None
        return int(row[0]) if row else 0


def _letter(row: tuple[Any, ...]) -> LetterRow:
    return LetterRow(*row)


GROUPS_ALL = f"""
SELECT group_key, reason, letters, first_seen, last_seen, sample_topic, sample_partition, sample_offset,
       sample_error
  FROM dead_letter_groups WHERE {{where}}
 ORDER BY last_seen DESC, group_key LIMIT {MAX_GROUPS}
"""
# Filtered by partition or time: counted from the rows; the sample stays the group's own.
GROUPS_OF_ROWS = f"""
SELECT d.group_key, min(d.reason), count(*), min(d.failed_at), max(d.failed_at),
       min(g.sample_topic), min(g.sample_partition), min(g.sample_offset), min(g.sample_error)
  FROM dead_letters d JOIN dead_letter_groups g USING (group_key)
 WHERE {{where}}
 GROUP BY d.group_key
 ORDER BY max(d.failed_at) DESC, d.group_key LIMIT {MAX_GROUPS}
"""


class DeadLetterQueries:
    """The console's reads, on the event loop; every query runs under ``timeout_s``."""

    def __init__(self, pool: AsyncConnectionPool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def _fetch(self, query: sql.Composed | sql.SQL, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            # The pool's sessions carry a statement_timeout of the same budget (configure_console_session).
            async with self._pool.connection(timeout=self._timeout_s) as conn, conn.cursor() as cur:
                await cur.execute(query, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise translate(exc) or TransientError(f"dead-letter index: {exc}") from None
        except Exception as exc:  # psycopg_pool.PoolTimeout is a psycopg.OperationalError; anything else
            raise TransientError(f"dead-letter index: {type(exc).__name__}") from exc

    async def groups(self, where: LetterFilter) -> list[GroupRow]:
        """The groups matching the filter, most recently seen first (at most ``MAX_GROUPS``)."""
        if where.narrows_rows:
            condition, params = where.where("d")
            query = sql.SQL(GROUPS_OF_ROWS).format(where=condition)
        else:
            condition, params = where.where()
            query = sql.SQL(GROUPS_ALL).format(where=condition)
        rows = await self._fetch(query, params)
        return [GroupRow(r[0], r[1], int(r[2]), r[3], r[4], (r[5], r[6], r[7]), r[8]) for r in rows]

    async def letters(
        self, where: LetterFilter, cursor: Cursor | None, size: int
    ) -> tuple[list[LetterRow], Cursor | None]:
        """One page of letters, newest first, and the cursor of the next page (None: no more)."""
        condition, params = where.where()
        if cursor is not None:
            condition = sql.SQL("{} AND " + KEYSET + " < (%s, %s, %s, %s)").format(condition)
            params = [*params, cursor.failed_at, cursor.origin_topic, cursor.origin_partition,
                      cursor.origin_offset]  # fmt: skip
        page = f"SELECT {COLUMNS} FROM dead_letters WHERE {{}} ORDER BY {NEWEST_FIRST} LIMIT %s"
        query = sql.SQL(page).format(condition)
        rows = [_letter(r) for r in await self._fetch(query, [*params, size + 1])]
        more = len(rows) > size
        rows = rows[:size]
        return rows, (Cursor.after(rows[-1]) if more and rows else None)

    async def letter(self, topic: str, partition: int, offset: int) -> LetterRow | None:
        query = sql.SQL(
            f"SELECT {COLUMNS} FROM dead_letters "
            "WHERE origin_topic = %s AND origin_partition = %s AND origin_offset = %s"
        )
        rows = await self._fetch(query, [topic, partition, offset])
        return _letter(rows[0]) if rows else None

    async def order_stored(self, order_uid: str) -> bool:
        """Whether the order is stored (a letter's page links it then)."""
        rows = await self._fetch(sql.SQL("SELECT 1 FROM orders WHERE order_uid = %s"), [order_uid])
        return bool(rows)

    async def selection(self, where: LetterFilter, limit: int) -> list[LetterRow]:
        """The letters an action works on: the newest ``limit`` matching the filter."""
        rows, _ = await self.letters(where, None, limit)
        return rows
