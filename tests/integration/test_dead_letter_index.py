"""The dead-letter read model against the real PostgreSQL (internal/store/dead_letters.py): a letter
recorded twice is one row and counts once, groups and keyset pages answer from the indexes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.store import migrations
from internal.store.dead_letters import (
    ERROR_CHARS,
    Cursor,
    DeadLetterIndex,
    DeadLetterQueries,
    LetterFilter,
    LetterRow,
)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
A = "invalid · items[].price · must be at least 0"
B = "undecodable · not JSON"


def row(offset: int, group: str = A, partition: int = 0, error: str = "e") -> LetterRow:
    return LetterRow(
        "orders", partition, offset, "orders.dlq", 0, offset + 1000, group.split(" · ", maxsplit=1)[0], group,
        f"uid{offset}", T0 + timedelta(seconds=offset), error, False, 10,
    )  # fmt: skip


def test_recording_is_idempotent_and_groups_count_new_rows_only(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    with ConnectionPool(schema_dsn, min_size=1, max_size=2, timeout=5, kwargs={"autocommit": True}) as pool:
        index = DeadLetterIndex(pool)
        assert index.record([row(i) for i in range(5)] + [row(5, B)]) == 6
        # A batch re-sent after a crash: the same origins again, one new letter among them.
        assert index.record([row(3), row(4), row(6, B, error="x\x00" + "y" * 5000)]) == 1
        assert index.record([]) == 0
    with psycopg.connect(schema_dsn) as conn:
        groups: dict[str, int] = dict(
            conn.execute("SELECT group_key, letters FROM dead_letter_groups").fetchall()
        )
        assert groups == {A: 5, B: 2}
        seen = conn.execute(
            "SELECT first_seen, last_seen FROM dead_letter_groups WHERE group_key = %s", (B,)
        ).fetchone()
        assert seen == (T0 + timedelta(seconds=5), T0 + timedelta(seconds=6))
        (error,) = conn.execute("SELECT error FROM dead_letters WHERE origin_offset = 6").fetchone() or ("",)
        assert len(error) == ERROR_CHARS
        assert "\x00" not in error


def test_pages_and_filters(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    with ConnectionPool(schema_dsn, min_size=1, max_size=1, timeout=5, kwargs={"autocommit": True}) as pool:
        DeadLetterIndex(pool).record([row(i, A if i % 4 else B, partition=i % 3) for i in range(40)])

    async def run() -> None:
        async with AsyncConnectionPool(
            schema_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}
        ) as pool:
            q = DeadLetterQueries(pool, 5.0)
            groups = await q.groups(LetterFilter())
            assert [(g.group_key, g.letters) for g in groups] == [(A, 30), (B, 10)]  # A seen last
            narrowed = await q.groups(LetterFilter(partition=0))
            assert sum(g.letters for g in narrowed) == 14
            timed = await q.groups(LetterFilter(since=T0 + timedelta(seconds=36)))
            assert {g.group_key: g.letters for g in timed} == {A: 3, B: 1}
            seen: list[int] = []
            cursor: Cursor | None = None
            while True:
                page, cursor = await q.letters(LetterFilter(group_key=A), cursor, 7)
                seen += [r.origin_offset for r in page]
                if cursor is None:
                    break
            assert seen == sorted((i for i in range(40) if i % 4), reverse=True)
            one = await q.letter("orders", 1, 1)
            assert one is not None
            assert one.group_key == A
            assert one.dlq_offset == 1001
            assert await q.letter("orders", 2, 1) is None
            picked = await q.selection(LetterFilter(group_key=B, until=T0 + timedelta(seconds=20)), 3)
            assert [r.origin_offset for r in picked] == [16, 12, 8]

    asyncio.run(run())
