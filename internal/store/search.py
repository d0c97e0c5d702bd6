"""The UI's search: orders by uid prefix, by track number or by customer id, keyset-paged, on a pool
of its own (``postgres.search_pool_size``), so searches queue behind each other and never behind
look-ups or readiness.

Each kind of match is its own index-served query (docs/search.md has the plans for 1,000,000 orders);
an OR of the three made PostgreSQL combine bitmaps and sort every match before the LIMIT, which for a
track number shared by 10,000 orders was 345 req/s at a p99 of 344 ms.

* uid prefix: a range on the unique index (its "C" collation compares bytes), in ``order_uid``
  order, which is the order that index serves. The prefix is passed as a range (``>= q AND <
  q-with-its-last-character-incremented``) rather than ``LIKE 'q%'``: a generic plan of ``LIKE $1``
  cannot use the index, a range can.
* track number and customer id: ``(track_number, id)`` and ``(customer_id, id)`` (sql/0003), read
  backwards from the cursor, newest first; the two are merged by id with ``UNION``.

Results list the uid-prefix matches first, then the others newest first, without repeating an order
that matched both. The cursor says where the last page ended: ``u<order_uid>`` inside the first
list, ``i<id>`` inside the second. New orders get higher ids, so paging the second list while
orders arrive neither repeats nor skips one; in the first list, a new order whose uid sorts before
the cursor is not shown on the later pages (it is not a repeat either).

The count is exact up to ``COUNT_BOUND`` and "at least that" beyond: each branch stops after
``COUNT_BOUND + 1`` index entries.

The counts, the prefix list and the other list are ONE statement (one round trip), planned
generically once per connection (``configure_lookup_session``): none of its parts has a plan that
depends on the parameters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from internal.domain.errors import TransientError
from internal.store.errors import translate
from internal.store.observe import DbObserver
from internal.store.reader import SUMMARIES, OrderSummary

COUNT_BOUND: Final = 1000
BIGINT_MAX: Final = 2**63 - 1

# %(lo)s/%(hi)s: the uid range of the prefix (empty when the text cannot start a uid).
_IN_PREFIX = "(o.order_uid >= %(lo)s AND o.order_uid < %(hi)s)"
BY_PREFIX = (
    SUMMARIES
    + f" WHERE %(list_prefix)s::boolean AND {_IN_PREFIX} AND o.order_uid > %(after_uid)s"
    + " ORDER BY o.order_uid LIMIT %(limit)s"
)


def _branch(column: str, before: bool) -> str:
    cursor = " AND id < %(before)s" if before else ""
    return (
        f"(SELECT id FROM orders o WHERE {column} = %(q)s{cursor} AND NOT {_IN_PREFIX}"
        " ORDER BY id DESC LIMIT %(limit)s)"
    )


def _by_id(before: bool) -> str:
    ids = f"{_branch('track_number', before)} UNION ALL {_branch('customer_id', before)}"
    # The outer IN makes the two lists a set: an order whose track number and customer id both equal
    # the text is listed once.
    return SUMMARIES + f" WHERE o.id IN ({ids}) ORDER BY o.id DESC LIMIT %(limit)s"


# Each kind counted on its own index, stopping after the bound: one index-only range scan each. Only
# when two kinds match at once are they counted again as a set (COUNT_UNION), so an order matching
# both is counted once; a hash of up to 3 x 1001 ids cost more than the three counts together.
COUNT = f"""
SELECT (SELECT count(*) FROM (SELECT FROM orders o WHERE {_IN_PREFIX} LIMIT %(bound)s) a),
       (SELECT count(*) FROM (SELECT FROM orders WHERE track_number = %(q)s LIMIT %(bound)s) t),
       (SELECT count(*) FROM (SELECT FROM orders WHERE customer_id = %(q)s LIMIT %(bound)s) c)
"""
COUNT_UNION = f"""
SELECT count(*) FROM (
    (SELECT id FROM orders o WHERE {_IN_PREFIX} LIMIT %(bound)s)
    UNION (SELECT id FROM orders WHERE track_number = %(q)s LIMIT %(bound)s)
    UNION (SELECT id FROM orders WHERE customer_id = %(q)s LIMIT %(bound)s)
) matches
"""


def _search(before: bool) -> str:
    """The page and the counts in ONE statement: per statement, psycopg's async round trip cost the
    service 170-370 us of its core, three times what PostgreSQL spent on the statement. The counts
    come on every row (and on one row of NULLs when nothing is listed); the prefix list first, in uid
    order, then the other list, newest first."""
    return f"""
WITH counted AS ({COUNT}),
     by_prefix AS ({BY_PREFIX}),
     by_id AS ({_by_id(before)})
SELECT c.*, r.* FROM counted c LEFT JOIN (
    SELECT 1 AS part, * FROM by_prefix UNION ALL SELECT 2 AS part, * FROM by_id
) r ON true
ORDER BY r.part, CASE WHEN r.part = 1 THEN r.order_uid END, r.id DESC
"""


SEARCH_FIRST = _search(before=False)
SEARCH_AFTER = _search(before=True)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after the uid ``after_uid`` in the prefix list, or (``before_id``) in the
    list by id, below that id; ``Cursor()`` is the first page, ``Cursor(by_id=True)`` the start of
    the second list."""

    after_uid: str = ""
    by_id: bool = False
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    orders: list[OrderSummary]
    total: int  # exact when <= COUNT_BOUND, else COUNT_BOUND + 1 ("more than COUNT_BOUND")
    next: Cursor | None


def prefix_range(query: str, is_uid_prefix: bool) -> tuple[str, str]:
    """[lo, hi) of the uids starting with ``query``; an empty range when it cannot start one."""
    if not is_uid_prefix:
        return "", ""
    return query, query[:-1] + chr(ord(query[-1]) + 1)


class OrderSearch:
    def __init__(self, pool: AsyncConnectionPool, observer: DbObserver | None = None) -> None:
        self._pool = pool
        self._observer = observer or DbObserver()

    async def search(
        self, query: str, is_uid_prefix: bool, cursor: Cursor, size: int, timeout_s: float
    ) -> SearchPage:
        """One page of ``size`` orders matching ``query`` from ``cursor`` on; ``TransientError`` when
        the database cannot answer within ``timeout_s`` (waiting for a connection included)."""
        lo, hi = prefix_range(query, is_uid_prefix)
        params: dict[str, Any] = {"q": query, "lo": lo, "hi": hi, "bound": COUNT_BOUND + 1,
                                  "limit": size + 1, "after_uid": cursor.after_uid,
                                  "before": cursor.before_id,
                                  "list_prefix": bool(lo) and not cursor.by_id}  # fmt: skip
        with self._observer.op("search_orders"):
            try:
                async with asyncio.timeout(timeout_s):
                    async with self._pool.connection(timeout=timeout_s) as conn:
                        total, by_prefix, by_id = await self._read(conn, cursor, params)
            except TimeoutError as exc:
                raise TransientError(f"search did not answer within {timeout_s}s") from exc
            except psycopg.Error as exc:
                raise translate(exc) or TransientError(str(exc)) from exc
        return _page(by_prefix, by_id, total, size)

    async def _read(
        self, conn: psycopg.AsyncConnection[Any], cursor: Cursor, params: dict[str, Any]
    ) -> tuple[int, list[OrderSummary], list[OrderSummary]]:
        statement = SEARCH_FIRST if cursor.before_id is None else SEARCH_AFTER
        rows = await (await conn.execute(statement, params)).fetchall()
        counts = [int(n) for n in rows[0][:3]] if rows else [0, 0, 0]
        by_prefix = [OrderSummary(*r[4:]) for r in rows if r[3] == 1]
        by_id = [OrderSummary(*r[4:]) for r in rows if r[3] == 2]
        if sum(1 for n in counts if n) > 1:  # two kinds match: count them as a set
            row = await (await conn.execute(COUNT_UNION, params)).fetchone()
            return int(row[0]) if row else 0, by_prefix, by_id
        return sum(counts), by_prefix, by_id


def _page(by_prefix: list[OrderSummary], by_id: list[OrderSummary], total: int, size: int) -> SearchPage:
    if len(by_prefix) > size:
        return SearchPage(by_prefix[:size], total, Cursor(after_uid=by_prefix[size - 1].order_uid))
    room = size - len(by_prefix)
    shown = by_prefix + by_id[:room]
    if len(by_id) <= room:
        return SearchPage(shown, total, None)
    if room == 0:  # the prefix list ended exactly at the page's end; the other list starts next
        return SearchPage(shown, total, Cursor(by_id=True))
    return SearchPage(shown, total, Cursor(by_id=True, before_id=shown[-1].id))
