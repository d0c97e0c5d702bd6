"""make bench-http: look-up throughput and latency of the HTTP API next to a bare endpoint measured in
the same run, and the cache warm-up time for 100,000 orders next to the raw read of the same query.

1. Reference: a bare Starlette endpoint returning fixed bytes (bench/bare_app.py), served by uvicorn
   in its own process with the service's settings.
2. Cache hit: ``GET /api/orders/<uid>`` on the service over N ingested orders, all in the cache (the
   consumer writes each stored order through to it).
3. Cache miss: the same uids on a service started with ``CACHE_MAX_ENTRIES=0``: every request reads
   PostgreSQL.
   Each is wrk on loopback (2 threads, 50 connections, ``--latency``) after a short warm-up run.
4. Warm-up: 100,000 orders inserted with the writer's statement, then ``OrderCache.warm`` over
   ``PostgresOrderReader.latest(100000)`` in this process, next to streaming the same query with no
   cache; the best of two rounds each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from psycopg_pool import ConnectionPool

from bench.bare_app import BODY
from bench.common import (
    CACHE,
    ROOT,
    Service,
    machine,
    orders_file,
    produce,
    read_orders,
    say,
    scratch,
    start_service,
    wait_committed,
)
from internal.cache.lru import OrderCache
from internal.config.settings import CacheSettings
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store.reader import PostgresOrderReader
from internal.store.writer import insert_new

WRK_SCRIPT = ROOT / "bench" / "wrk_paths.lua"
INSERT_BATCH = 2000
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
# Targets of the read-path issue, printed next to the figures (a benchmark asserts nothing).
HIT_VS_BARE = 0.85
HIT_P99_MS = 10.0
MISS_RPS = 4000.0
MISS_P99_MS = 25.0
WARM_100K_S = 3.0


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str  # wrk's non-2xx and socket error lines, empty when there were none

    def line(self) -> str:
        text = f"{self.rps:>9,.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms"
        return text + (f"   ({self.errors})" if self.errors else "")


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = [
        line.strip() for line in output.splitlines() if line.strip().startswith(("Non-2xx", "Socket errors"))
    ]
    return WrkResult(
        float(rps[1]), _duration_ms(p50[1]), _duration_ms(p99[1]), int(total[1]), "; ".join(errors)
    )


def wrk(port: int, uids_file: Path, seconds: int, threads: int, connections: int) -> WrkResult:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env={**os.environ, "WRK_UIDS_FILE": str(uids_file)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return parse_wrk(done.stdout)


def measure(name: str, port: int, uids_file: Path, args: argparse.Namespace) -> WrkResult:
    # A short run first: connections opened, code paths and the database's buffers warm.
    wrk(port, uids_file, args.prime_seconds, args.threads, args.connections)
    result = wrk(port, uids_file, args.seconds, args.threads, args.connections)
    say(f"  {name:<28}{result.line()}")
    return result


def http_status(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if http_status(port, path)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not answer 200 on {path} within {timeout_s:.0f}s")


def start_bare(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
    )  # fmt: skip
    wait_http(port, "/api/orders/probe", proc, "the bare app")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def started_service(dsn: str, topic: str, port: int, group: str, **env: str) -> Service:
    service = start_service(dsn, topic, port, group, **env)
    try:
        wait_http(port, "/readyz", service.proc, f"the service (log: {service.log})")
    except BaseException:
        service.stop()
        raise
    return service


def cached_share(port: int, uids: list[str], sample: int = 200) -> float:
    """Share of a sample of uids the service answers from its cache (the ``X-Cache`` header)."""
    step = max(1, len(uids) // sample)
    picked = uids[::step]
    return sum(http_status(port, f"/api/orders/{uid}")[1].get("x-cache") == "HIT" for uid in picked) / len(
        picked
    )


def http_runs(args: argparse.Namespace) -> None:
    path = orders_file(args.orders)
    values = list(read_orders(path))
    uids = [json.loads(v)["order_uid"] for v in values]
    uids_file = CACHE / f"uids-{args.orders}.txt"
    uids_file.write_text("\n".join(uids) + "\n", encoding="ascii")
    mean_bytes = sum(len(v) for v in values) / len(values)
    say(f"{len(values):,} orders, mean JSON {mean_bytes:,.0f} bytes (bare body: {len(BODY):,} bytes); wrk "
        f"-t{args.threads} -c{args.connections} -d{args.seconds}s on loopback")  # fmt: skip

    with scratch() as (dsn, topic):
        produce(path, topic)
        group = f"bench-{uuid.uuid4().hex[:8]}"
        bare = start_bare(args.bare_port)
        try:
            service = started_service(dsn, topic, args.port, group)
            try:
                wait_committed(topic, group, len(values))
                share = cached_share(args.port, uids)
                say(f"  ingested; {share:.0%} of a sample answered from the cache (X-Cache: HIT)")
                ref = measure("bare Starlette (reference)", args.bare_port, uids_file, args)
                hit = measure("cache hit", args.port, uids_file, args)
            finally:
                service.stop()
        finally:
            stop(bare)
        # The same group: its offsets are at the end, so this instance ingests nothing during the run.
        service = started_service(dsn, topic, args.port, group, CACHE_MAX_ENTRIES="0")
        try:
            miss_share = cached_share(args.port, uids)
            say(f"  cache off; {miss_share:.0%} of a sample answered from the cache")
            miss = measure("cache miss (PostgreSQL)", args.port, uids_file, args)
        finally:
            service.stop()

    ratio = hit.rps / ref.rps
    say(f"hit / bare: {ratio:.2f} x   miss / bare: {miss.rps / ref.rps:.2f} x")
    say(f"targets: hit >= {HIT_VS_BARE} x bare and p99 <= {HIT_P99_MS:.0f} ms: "
        f"{_met(ratio >= HIT_VS_BARE and hit.p99_ms <= HIT_P99_MS)}; "
        f"miss >= {MISS_RPS:,.0f} req/s and p99 <= {MISS_P99_MS:.0f} ms: "
        f"{_met(miss.rps >= MISS_RPS and miss.p99_ms <= MISS_P99_MS)}")  # fmt: skip


def warmup_run(args: argparse.Namespace) -> None:
    path = orders_file(args.warm_orders)
    with scratch() as (dsn, _topic), ConnectionPool(dsn, min_size=1, max_size=2) as pool:
        started = perf_counter()
        inserted = 0
        with pool.connection() as conn:
            # Decoded a batch at a time: 100,000 decoded orders at once would take over a GiB.
            for batch in batched(read_orders(path), INSERT_BATCH):
                with conn.transaction(), conn.cursor() as cur:
                    inserted += len(
                        insert_new(cur, [OrderRecord.of(Order.model_validate_json(v)) for v in batch])
                    )
            conn.execute("ANALYZE")  # as autovacuum would soon after such a load
        say(f"{inserted:,} orders decoded and inserted in {perf_counter() - started:.1f} s "
            f"(the writer's statement, batches of {INSERT_BATCH})")  # fmt: skip
        reader = PostgresOrderReader(pool)
        defaults = CacheSettings()
        raw_s: list[float] = []
        warm_s: list[float] = []
        stats = None
        for _round in range(2):  # alternated, best of each: the first read also warms PostgreSQL's buffers
            started = perf_counter()
            streamed = sum(1 for _ in reader.latest(args.warm_orders))
            raw_s.append(perf_counter() - started)
            cache = OrderCache(
                max(defaults.max_entries, args.warm_orders), defaults.max_bytes, defaults.max_entry_bytes
            )
            started = perf_counter()
            cached = cache.warm(reader.latest(args.warm_orders))
            warm_s.append(perf_counter() - started)
            stats = cache.stats()
            del cache
    assert stats is not None
    say(f"  raw stream of the query (reference) {min(raw_s):6.2f} s   ({streamed:,} orders)")
    say(f"  OrderCache.warm                     {min(warm_s):6.2f} s   ({cached:,} cached) "
        f"= {min(warm_s) / min(raw_s):.2f} x raw")  # fmt: skip
    say(f"  memory per cached order: {stats.bytes / max(1, stats.entries):,.0f} bytes "
        f"({stats.bytes / 2**20:,.0f} MiB for {stats.entries:,})")  # fmt: skip
    say(f"target: warm-up of {args.warm_orders:,} <= {WARM_100K_S:.0f} s: {_met(min(warm_s) <= WARM_100K_S)}")


def batched(values: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--orders", type=int, default=20_000, help="orders for the HTTP runs")
    parser.add_argument("--warm-orders", type=int, default=100_000, help="orders for the warm-up run")
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured wrk run")
    parser.add_argument("--prime-seconds", type=int, default=2, help="length of the discarded run before")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--bare-port", type=int, default=18081)
    parser.add_argument("--skip-http", action="store_true", help="only the warm-up run")
    parser.add_argument("--skip-warmup", action="store_true", help="only the HTTP runs")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/install-wrk.sh")
    say(f"machine: {machine()}")
    if not args.skip_http:
        http_runs(args)
    if not args.skip_warmup:
        warmup_run(args)


if __name__ == "__main__":
    main()
