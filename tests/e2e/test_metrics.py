"""After one message of each outcome and one request of each status, every metric of docs/metrics.md
is exported and each matching series moved by exactly the expected amount."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from internal.pkg.metrics import METRIC_NAMES
from tests.conftest import Topics
from tests.e2e.helpers import produce, wait_committed_to_end
from tests.orders import encode, order_doc
from tests.service_proc import ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e
ORDERS_ROUTE = "/api/orders/{order_uid}"
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service: ServiceProcess) -> Scrape:
    text = service.get("/metrics").body.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(
    before: Scrape,
    after: Scrape,
    name: str,
    **labels: str,
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_every_metric_moves_by_exactly_what_happened(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(
        {
            **service_env,
            "CACHE_MAX_ENTRY_BYTES": "1500",
            "HTTP_REQUEST_TIMEOUT_MS": "700",
            "CACHE_WARMUP_ORDERS": "0",
        }
    )
    with psycopg.connect(schema_dsn, autocommit=True) as conn:  # the cause of one db_rejected
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.customer_id = 'rejectme' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse()")
    before = scrape(service)

    small = order_doc(1, items=1)  # stored and cached
    large = order_doc(2, items=5)  # stored, but larger than the cache's per-entry cap: always a miss
    conflicting = json.loads(json.dumps(small)) | {"customer_id": "other"}
    invalid = order_doc(3) | {"sm_id": "99"}
    rejected = order_doc(4) | {"customer_id": "rejectme"}
    values = [
        encode(small),
        encode(small),
        encode(conflicting),
        encode(invalid),
        encode(rejected),
        encode(large),
    ]
    path = tmp_path / "orders.json"
    path.write_bytes(b"\n".join(values))
    produce(path, topics.orders, kafka_brokers, "-gibberish", "1")
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 7, timeout_s=60, services=[service])

    uid, large_uid = small["order_uid"], large["order_uid"]
    hit = service.get(f"/api/orders/{uid}")
    assert (hit.status, hit.headers["X-Cache"]) == (200, "HIT")
    miss = service.get(f"/api/orders/{large_uid}")
    assert (miss.status, miss.headers["X-Cache"]) == (200, "MISS")
    assert service.get(f"/api/orders/{uid}", headers={"If-None-Match": hit.headers["ETag"]}).status == 304
    assert service.get("/api/orders/no-such!").status == 400
    assert service.get("/api/orders/nosuchorder").status == 404
    with psycopg.connect(schema_dsn) as locker:  # holds every reader back until the request times out
        locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        assert service.get("/api/orders/lockedout").status == 503
    wait_until(lambda: service.get("/readyz").status == 200, timeout_s=30, what="ready again after the lock")

    def lag_reported() -> Scrape | None:
        now = scrape(service)
        lags = [v for (name, _), v in now.items() if name == "consumer_lag"]
        transient = delta(before, now, "db_transient_errors_total")
        return now if lags and all(v == 0 for v in lags) and transient == 1 else None

    after = wait_until(lag_reported, timeout_s=30, what="consumer_lag at 0 and the timed-out read counted")

    assert_consumer_series(before, after)
    assert_http_cache_db_series(before, after, len(hit.body))


def assert_consumer_series(before: Scrape, after: Scrape) -> None:
    names = {name for name, _ in after}
    for metric in METRIC_NAMES:
        assert any(n == metric or n.startswith(metric + "_") for n in names), f"{metric} is not exported"
    expected = {"stored": 2, "duplicate": 1, "conflict": 1, "invalid": 1, "undecodable": 1, "db_rejected": 1}
    for outcome, n in expected.items():
        assert delta(before, after, "consumer_messages_total", outcome=outcome) == n, outcome
    assert delta(before, after, "consumer_messages_total", outcome="processing_error") == 0
    for reason in ("conflict", "invalid", "undecodable", "db_rejected"):
        assert delta(before, after, "dlq_messages_total", reason=reason) == 1, reason
    batches = delta(before, after, "consumer_batch_size_count")
    assert delta(before, after, "consumer_batch_size_sum") == 7
    assert delta(before, after, "consumer_batch_duration_seconds_count") == batches
    assert delta(before, after, "consumer_message_age_seconds_count") == 7
    assert delta(before, after, "consumer_order_freshness_seconds_count") == 2  # the stored ones
    assert delta(before, after, "consumer_order_freshness_seconds_sum") > 0
    assert delta(before, after, "consumer_retries_total") == 0
    assert after[("consumer_paused", ())] == 0


def assert_http_cache_db_series(before: Scrape, after: Scrape, body_size: int) -> None:
    for status, n in {"200": 2, "304": 1, "400": 1, "404": 1, "503": 1}.items():
        assert (
            delta(before, after, "http_requests_total", method="GET", route=ORDERS_ROUTE, status=status) == n
        )
    assert delta(before, after, "http_request_duration_seconds_count", method="GET", route=ORDERS_ROUTE) == 6
    assert delta(before, after, "cache_hits_total") == 2  # the hit and the 304
    assert delta(before, after, "cache_misses_total") == 3  # the large order, the 404, the 503
    assert after[("cache_entries", ())] == 1  # only the small order fits under the per-entry cap
    assert after[("cache_bytes", ())] > body_size
    assert delta(before, after, "cache_evictions_total") == 0
    assert (
        delta(before, after, "db_query_duration_seconds_count", op="get_order") == 2
    )  # the miss and the 404
    assert delta(before, after, "db_query_duration_seconds_count", op="write_batch") >= 1
    assert after[("db_up", ())] == 1
    assert ("cache_warmup_duration_seconds", ()) in after
    assert any(name == "l0_build_info" and v == 1 for (name, _), v in after.items())
