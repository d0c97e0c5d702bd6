"""The JSON API of the running service: cache hits and misses, warm-up across a restart, error
answers, and what happens to look-ups while PostgreSQL is down."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from internal.domain.order import Order
from tests.conftest import Topics, app_name
from tests.e2e.helpers import ingest, stack
from tests.service_proc import ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def test_miss_then_hit_and_warm_after_restart(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    cold_env = {**service_env, "CACHE_WARMUP_ORDERS": "0"}
    first = start_service(cold_env, name="first")
    data = ingest(tmp_path, topics, kafka_brokers, first)
    uid, order = next(iter(data.valid.items()))
    written_through = first.get(f"/api/orders/{uid}")
    assert written_through.status == 200
    assert written_through.headers["X-Cache"] == "HIT"  # the consumer fed the cache after the commit
    assert Order.model_validate_json(written_through.body) == order  # the stored order, message-shaped
    assert first.stop() == 0

    cold = start_service(cold_env, name="cold")  # no warm-up: the first look-up reads PostgreSQL
    miss = cold.get(f"/api/orders/{uid}")
    hit = cold.get(f"/api/orders/{uid}")
    assert (miss.status, miss.headers["X-Cache"]) == (200, "MISS")
    assert (hit.status, hit.headers["X-Cache"]) == (200, "HIT")
    assert miss.body == hit.body == written_through.body  # one body per order, whatever its source
    assert miss.headers["ETag"] == hit.headers["ETag"] == written_through.headers["ETag"]
    assert cold.stop() == 0

    warm = start_service(service_env, name="warm")  # warm-up loads the latest orders before ready
    for other in data.valid:
        assert warm.get(f"/api/orders/{other}").headers["X-Cache"] == "HIT"
    assert warm.get(f"/order/{uid}").body == written_through.body  # the original README's path

    def events() -> list[str]:
        return [json.loads(line)["event"] for line in warm.log_lines() if line.startswith("{")]

    # The warmed heap leaves the collector's generations before the consumer runs (docs/performance.md).
    wait_until(lambda: "partitions_assigned" in events(), timeout_s=30, what="the partitions' assignment")
    logged = events()
    assert logged.index("cache_warmed") < logged.index("gc_frozen") < logged.index("partitions_assigned")
    assert warm.stop() == 0


def test_error_answers_are_json_with_the_request_id(
    topics: Topics, kafka_brokers: str, service_env: dict[str, str], start_service: StartService
) -> None:
    service = start_service(service_env)
    malformed = service.get("/api/orders/not-a-uid!", headers={"X-Request-ID": "trace-123"})
    assert malformed.status == 400
    assert malformed.json() == {"error": malformed.json()["error"], "status": 400, "request_id": "trace-123"}
    assert malformed.headers["X-Request-ID"] == "trace-123"
    unknown = service.get("/api/orders/doesnotexist1")
    assert unknown.status == 404
    assert unknown.json()["request_id"] == unknown.headers["X-Request-ID"]
    too_long = service.get("/api/orders/" + "a" * 65)
    assert too_long.status == 400
    spec = service.get("/openapi.json").json()
    assert set(spec["paths"]) >= {"/api/orders/{order_uid}", "/order/{order_uid}", "/healthz", "/readyz"}


def test_etag_answers_304_when_unchanged(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    data = ingest(tmp_path, topics, kafka_brokers, service, n=3)
    uid = next(iter(data.valid))
    first = service.get(f"/api/orders/{uid}")
    again = service.get(f"/api/orders/{uid}", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert again.body == b""


def test_head_answers_like_get_without_a_body(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    """GET look-ups are answered ahead of Starlette's router, HEAD by the routed handler: both must
    give the same status and headers for a hit, a miss, an unknown and a malformed uid."""

    def assert_alike(service: ServiceProcess, path: str, status: int, x_cache: str | None) -> None:
        head = service.get(path, method="HEAD", headers={"X-Request-ID": "same-id"})
        get = service.get(path, headers={"X-Request-ID": "same-id"})
        assert (head.status, get.status) == (status, status), path
        assert (head.body, get.headers.get("x-cache")) == (b"", x_cache), path
        for name in ("content-type", "content-length", "etag", "x-cache"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)

    service = start_service(service_env, name="cached")
    uid = next(iter(ingest(tmp_path, topics, kafka_brokers, service, n=3).valid))
    assert_alike(service, f"/api/orders/{uid}", 200, "HIT")
    assert_alike(service, f"/order/{uid}", 200, "HIT")
    assert_alike(service, "/api/orders/doesnotexist7", 404, None)
    assert_alike(service, "/api/orders/not-a-uid!", 400, None)
    assert service.get(f"/api/orders/{uid}", method="POST").status == 405
    assert service.stop() == 0

    cache_off = start_service({**service_env, "CACHE_MAX_ENTRIES": "0"}, name="cache-off")
    assert_alike(cache_off, f"/api/orders/{uid}", 200, "MISS")
    assert_alike(cache_off, f"/order/{uid}", 200, "MISS")


def test_misses_use_at_most_lookup_pool_size_connections(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    pg_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    """60 concurrent cache misses share the look-up pool (postgres.lookup_pool_size = 2): every one
    is answered, and PostgreSQL never sees more than two look-up connections of this service (counted
    by the application name the test gave it, so other services on the same server do not count)."""
    service = start_service({**service_env, "CACHE_MAX_ENTRIES": "0", "POSTGRES_LOOKUP_POOL_SIZE": "2"})
    data = ingest(tmp_path, topics, kafka_brokers, service, n=60)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not done.wait(0.01):  # a sample every 10 ms until the requests are answered
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (f"{app_name(topics)}-lookup",),
                ).fetchone()
                seen.append(int(row[0]) if row else 0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=30) as clients:
            answers = list(clients.map(lambda uid: service.get(f"/api/orders/{uid}"), list(data.valid) * 3))
    finally:
        done.set()
        watcher.join()
    assert {(a.status, a.headers["X-Cache"]) for a in answers} == {(200, "MISS")}
    assert seen, "the watcher saw no sample"
    assert 1 <= max(seen) <= 2, seen


def test_database_down_cold_uid_is_503_and_cached_uid_still_served(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
    postgres_restorer: None,
    pg_dsn: str,
) -> None:
    service = start_service({**service_env, "HTTP_REQUEST_TIMEOUT_MS": "1500"})
    data = ingest(tmp_path, topics, kafka_brokers, service, n=5)
    cached_uid = next(iter(data.valid))
    assert service.get(f"/api/orders/{cached_uid}").headers["X-Cache"] == "HIT"
    stack("postgres.sh", "stop", pg_dsn)

    started = time.monotonic()
    cold = service.get("/api/orders/neverstored42")
    assert cold.status == 503  # an outage is never reported as "not found"
    assert time.monotonic() - started < 5  # within the request's time budget, not a hang
    assert "unavailable" in cold.json()["error"]
    hit = service.get(f"/api/orders/{cached_uid}")
    assert (hit.status, hit.headers["X-Cache"]) == (200, "HIT")
    assert service.get("/api/orders/bad-uid!").status == 400  # decided without the database
    page = service.get("/orders/neverstored42")
    assert page.status == 503
    assert b"Orders are unavailable" in page.body

    stack("postgres.sh", "start", pg_dsn)
    wait_until(lambda: service.get("/api/orders/neverstored42").status == 404, timeout_s=30, what="404 again")


def test_database_down_at_start_warms_up_once_it_returns(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
    postgres_restorer: None,
    pg_dsn: str,
) -> None:
    first = start_service(service_env, name="first")
    data = ingest(tmp_path, topics, kafka_brokers, first, n=10)
    assert first.stop() == 0
    stack("postgres.sh", "stop", pg_dsn)
    # Migrations need the database; a deployment that migrates separately starts without it.
    service = start_service({**service_env, "POSTGRES_MIGRATE_ON_START": "false"}, name="second", ready=False)

    def not_ready_while_cold() -> bool:
        service.assert_alive()
        try:
            answer = service.get("/readyz", timeout_s=5)
        except OSError:
            return False
        components = answer.json()["components"]
        return answer.status == 503 and not components["cache"]["ok"] and not components["database"]["ok"]

    wait_until(not_ready_while_cold, timeout_s=30, what="readiness 503 naming the database and the cache")
    assert service.get("/healthz").status == 200
    stack("postgres.sh", "start", pg_dsn)
    service.wait_ready(timeout_s=60)
    for uid in data.valid:
        assert service.get(f"/api/orders/{uid}").headers["X-Cache"] == "HIT"  # warmed after the outage
    assert service.stop() == 0
