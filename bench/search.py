"""make bench-search: the UI's search with 1,000,000 orders stored, next to the bare endpoint of the
same run, and how readiness and look-ups fare while searches saturate their pool.

The stored orders live in a schema of their own (``bench_search_1m``), kept between runs: building it
takes minutes. 10,000 generated orders go in through the writer's statement, then SQL copies them (new
uids, same content) until 1,000,000 are stored; one order in 100 gets the shared track number, another
one in 100 the customer id, so each is shared by 10,000 orders spread over the whole id range. Then
VACUUM ANALYZE, as autovacuum would soon after such a load.

Measured with wrk (2 threads, 50 connections): pages 1-30 of each search, walked through the "Next"
links the pages give. ``--explain`` prints the plans of the search statements (docs/search.md).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from html import unescape

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.common import DSN, machine, orders_file, read_orders, say, scratch_topic
from bench.wrk import (
    add_wrk_arguments,
    http_status,
    measure,
    met,
    paths_file,
    start_bare,
    started_service,
    stop,
)
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store import migrations, search
from internal.store.writer import insert_new

SCHEMA = "bench_search_1m"
BASE_ORDERS = 10_000
SHARED_TRACK = "WBILBENCHSHARED"
SHARED_CUSTOMER = "benchcustomer10k"
PAGES = 30
SEARCH_P99_MS = 50.0
COPY_CHUNK = 10  # copies of the base orders per statement
COPIES = [
    """INSERT INTO orders (id, order_uid, track_number, entry, locale, internal_signature, customer_id,
                        delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash)
       SELECT id + k * %(n)s, order_uid || 'r' || k, track_number, entry, locale, internal_signature,
              customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash
         FROM orders, generate_series(%(lo)s::int, %(hi)s::int) k WHERE id <= %(n)s""",
    """INSERT INTO deliveries SELECT order_id + k * %(n)s, name, phone, zip, city, address, region, email
         FROM deliveries, generate_series(%(lo)s::int, %(hi)s::int) k WHERE order_id <= %(n)s""",
    """INSERT INTO payments SELECT order_id + k * %(n)s, transaction || 'r' || k, request_id, currency,
              provider, amount, payment_dt, bank, delivery_cost, goods_total, custom_fee
         FROM payments, generate_series(%(lo)s::int, %(hi)s::int) k WHERE order_id <= %(n)s""",
    """INSERT INTO items SELECT order_id + k * %(n)s, position, chrt_id, track_number, price, rid, name,
              sale, size, total_price, nm_id, brand, status
         FROM items, generate_series(%(lo)s::int, %(hi)s::int) k WHERE order_id <= %(n)s""",
]


def stored_schema(stored: int) -> str:
    """The DSN of the kept schema holding ``stored`` orders, built when it holds anything else."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    dsn = make_conninfo(DSN, options=f"-c search_path={SCHEMA}")
    migrations.apply_pending(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
        if row and row[0] == stored:
            say(f"reusing schema {SCHEMA} with {stored:,} orders")
            return dsn
        say(f"building schema {SCHEMA}: {stored:,} orders (minutes; kept for the next runs)")
        started = time.monotonic()
        conn.execute("TRUNCATE orders RESTART IDENTITY CASCADE")
        batch: list[OrderRecord] = []
        for value in read_orders(orders_file(BASE_ORDERS, seed=5)):
            batch.append(OrderRecord.of(Order.model_validate_json(value)))
            if len(batch) == 2000:
                with conn.transaction(), conn.cursor() as cur:
                    insert_new(cur, batch)
                batch = []
        copies = stored // BASE_ORDERS
        for lo in range(1, copies, COPY_CHUNK):
            with conn.transaction():
                for statement in COPIES:
                    conn.execute(
                        statement, {"n": BASE_ORDERS, "lo": lo, "hi": min(copies - 1, lo + COPY_CHUNK - 1)}
                    )
        spread = stored // 10_000
        conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders))")
        conn.execute("UPDATE orders SET track_number = %s WHERE id %% %s = 7", (SHARED_TRACK, spread))
        conn.execute("UPDATE orders SET customer_id = %s WHERE id %% %s = 13", (SHARED_CUSTOMER, spread))
        conn.execute("VACUUM ANALYZE")
        say(f"  built in {time.monotonic() - started:.0f} s")
    return dsn


def walk(port: int, query: str, pages: int) -> list[str]:
    """The paths of the first ``pages`` result pages, through each page's "Next" link."""
    path: str | None = "/search?" + urllib.parse.urlencode({"q": query})
    found: list[str] = []
    while path is not None and len(found) < pages:
        found.append(path)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            body = answer.read().decode()
        link = re.search(r'<a href="([^"]+)" rel="next">', body)
        path = unescape(link[1]) if link else None
    return found


class Probes:
    """Readiness and a look-up read from PostgreSQL (an unknown uid: 404), probed one at a time every
    20 ms from threads of their own while searches load the service."""

    PATHS = ("/readyz", "/api/orders/nosuchorder")

    def __init__(self, port: int, seconds: float) -> None:
        self._port = port
        self._until = time.monotonic() + seconds
        self.latencies_ms: dict[str, list[float]] = {path: [] for path in self.PATHS}
        self._threads = [threading.Thread(target=self._probe, args=(path,)) for path in self.PATHS]
        for thread in self._threads:
            thread.start()

    def _probe(self, path: str) -> None:
        while time.monotonic() < self._until:
            started = time.perf_counter()
            http_status(self._port, path)
            self.latencies_ms[path].append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)

    def report(self) -> str:
        for thread in self._threads:
            thread.join()
        parts = [f"{path} median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms ({len(ms)} probes)"
                 for path, ms in self.latencies_ms.items()]  # fmt: skip
        return "    meanwhile: " + "; ".join(parts)


def explain(dsn: str, uid_prefix: str) -> None:
    cases = [
        ("page 1, track number", search.SEARCH_FIRST, SHARED_TRACK, None),
        ("a later page, track number", search.SEARCH_AFTER, SHARED_TRACK, 500_000),
        ("page 1, customer id", search.SEARCH_FIRST, SHARED_CUSTOMER, None),
        ("page 1, uid prefix", search.SEARCH_FIRST, uid_prefix, None),
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for name, statement, query, before in cases:
            lo, hi = search.prefix_range(query, query.isalnum())
            params = {"q": query, "lo": lo, "hi": hi, "bound": search.COUNT_BOUND + 1, "limit": 21,
                      "after_uid": "", "before": before, "list_prefix": bool(lo)}  # fmt: skip
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
            say(f"-- {name} (q={query!r}, before={before})")
            say("\n".join(str(r[0]) for r in plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--explain", action="store_true", help="print the statements' plans and stop")
    add_wrk_arguments(parser)
    parser.set_defaults(seconds=10)  # its targets are latencies: one long run per search, not pairs
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/install-wrk.sh")
    say(f"machine: {machine()}")
    dsn = stored_schema(args.stored)
    with psycopg.connect(dsn) as conn:
        uid_row = conn.execute("SELECT order_uid FROM orders WHERE id = 1").fetchone()
    uid_prefix = str(uid_row[0])[:3] if uid_row else "a"
    if args.explain:
        explain(dsn, uid_prefix)
        return
    bare_paths = paths_file("bare", ["/api/orders/probe"])
    bare = start_bare(args.bare_port)
    try:
        reference = measure("bare Starlette (reference)", args.bare_port, bare_paths, args)
    finally:
        stop(bare)
    results = {}
    with scratch_topic() as topic:
        service = started_service(dsn, topic, args.port, f"bench-{uuid.uuid4().hex[:8]}")
        try:
            for name, query in (("track number, 10,000 orders", SHARED_TRACK),
                                ("customer, 10,000 orders", SHARED_CUSTOMER),
                                (f"uid prefix {uid_prefix!r}", uid_prefix)):  # fmt: skip
                pages = walk(args.port, query, PAGES)
                label = f"search {name}"
                probes = (
                    Probes(args.port, args.prime_seconds + args.seconds) if query == SHARED_TRACK else None
                )
                results[label] = measure(label, args.port, paths_file(f"search-{query}", pages), args)
                if probes is not None:
                    say(probes.report())
                say(f"    ({len(pages)} pages walked; = {results[label].rps / reference.rps:.2f} x bare)")
        finally:
            service.stop()
    for label, result in results.items():
        say(f"target: {label} p99 <= {SEARCH_P99_MS:.0f} ms at c={args.connections}: "
            f"{met(result.p99_ms <= SEARCH_P99_MS)} ({result.p99_ms:.1f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
