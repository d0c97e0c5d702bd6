"""The HTML pages of the running service: the security headers on every route, the order page from
the cache with its ETag (304) and HEAD like GET, and the home page listing an order within a second
of its commit."""

from __future__ import annotations

import http.client
import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Topics
from tests.e2e.helpers import ingest, make_input, produce, wait_committed_to_end
from tests.orders import order_doc
from tests.service_proc import HttpAnswer, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-cache",
}


def assert_page_headers(answer: HttpAnswer, path: str) -> None:
    for name, value in PAGE_HEADERS.items():
        assert answer.headers.get(name) == value, (path, name, answer.headers.get(name))
    assert "server" not in answer.headers, path  # it names the software, and costs every response


def test_every_route_carries_the_headers_for_personal_data(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    uid = next(iter(ingest(tmp_path, topics, kafka_brokers, service, n=2, seed=71).valid))
    html_paths = [
        "/", f"/orders/{uid}", "/orders/NoSuchOrder1", "/orders/not-a-uid!", "/orders/" + "a" * 65,
        "/search?q=x", f"/search?q={uid[:3]}", "/search?q=x&after=bogus", "/search?q=%00",
        "/orders/%F0%9F%9A%9A", "/nowhere", "/orders/a%2Fb", "/orders/",
    ]  # fmt: skip
    for path in html_paths:
        for method in ("GET", "HEAD"):
            answer = service.get(path, method=method)
            assert answer.status < 500, (path, method)
            assert answer.headers["Content-Type"].startswith("text/html"), (path, method)
            assert_page_headers(answer, f"{method} {path}")
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)  # no redirect following
    try:
        conn.request("GET", "/orders?order_uid=x")
        redirect = conn.getresponse()
        redirect.read()
    finally:
        conn.close()
    assert redirect.status == 303
    for name, value in PAGE_HEADERS.items():
        assert redirect.getheader(name) == value, ("redirect", name)
    etag = service.get(f"/orders/{uid}").headers["ETag"]
    assert_page_headers(service.get(f"/orders/{uid}", headers={"If-None-Match": etag}), "304")
    for path in (f"/api/orders/{uid}", "/api/orders/nosuch", "/openapi.json", "/healthz", "/readyz",
                 "/metrics", "/static/style.css", "/nowhere"):  # fmt: skip
        answer = service.get(path)
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
    assert service.get("/static/style.css").headers["Cache-Control"] == "public, max-age=3600"


def test_an_address_no_route_serves_answers_in_the_service_shapes_not_plain_text(
    service_env: dict[str, str], start_service: StartService
) -> None:
    service = start_service(service_env)
    for path in ("/nowhere", "/orders/a%2Fb", "/orders/a/b", "/orders/", "/static/nope.css", "/%FF"):
        answer = service.get(path)
        assert answer.status == 404, path
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8", path
        assert b"Page not found" in answer.body, path
        assert answer.headers["X-Request-ID"].encode() in answer.body, path  # what to quote to support
        assert b'action="/search"' in answer.body, path  # the way on: the search box
        assert_page_headers(answer, path)
    for path in ("/api/nowhere", "/api/orders/a%2Fb", "/api/orders/", "/order/a/b"):
        answer = service.get(path)
        assert answer.status == 404, path
        assert answer.json() == {
            "error": "no endpoint at this path (see /openapi.json)",
            "status": 404,
            "request_id": answer.headers["X-Request-ID"],
        }, path
    posted = service.get("/api/orders/abc", method="POST")
    assert posted.status == 405
    assert "GET" in posted.headers["Allow"]
    assert posted.json()["error"] == "method not allowed at this path"
    assert service.get("/orders/abc", method="DELETE").status == 405
    assert service.get("/readyz", method="POST").json()["status"] == 405  # a client's, not a person's


def test_the_order_page_comes_from_the_cache_with_its_etag_and_head_is_like_get(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    uid = next(iter(ingest(tmp_path, topics, kafka_brokers, service, n=3, seed=72).valid))
    order = service.get(f"/api/orders/{uid}")
    first = service.get(f"/orders/{uid}", headers={"X-Request-ID": "first-view"})
    again = service.get(f"/orders/{uid}", headers={"X-Request-ID": "second-view"})
    assert first.status == again.status == 200
    assert first.body == again.body  # rendered once, then the entry's page; no request id inside
    assert b"first-view" not in first.body
    assert first.headers["X-Cache"] == "HIT"
    assert first.headers["ETag"] == again.headers["ETag"]
    assert first.headers["ETag"].startswith(order.headers["ETag"][:-1] + "-")  # the JSON's + templates'
    for header in (first.headers["ETag"], f"W/{first.headers['ETag']}", f'"x", {first.headers["ETag"]}', "*"):
        not_modified = service.get(f"/orders/{uid}", headers={"If-None-Match": header})
        assert (not_modified.status, not_modified.body) == (304, b""), header
    assert service.get(f"/orders/{uid}", headers={"If-None-Match": order.headers["ETag"]}).status == 200
    head = service.get(f"/orders/{uid}", method="HEAD")
    for name in ("content-type", "content-length", "etag", "x-cache"):
        assert head.headers.get(name) == first.headers.get(name), name
    document = json.loads(order.body)
    for value in (document["shardkey"], str(document["sm_id"]), document["items"][0]["rid"],
                  str(document["items"][0]["chrt_id"]), str(document["items"][0]["nm_id"])):  # fmt: skip
        assert value.encode() in first.body


def test_the_home_page_lists_an_order_within_a_second_of_its_commit(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    assert service.get("/").status == 200  # a snapshot exists before the order arrives
    data = make_input(tmp_path, 1, invalid_rate=0.0, seed=73)
    (uid,) = data.valid
    produce(data.path, topics.orders, kafka_brokers)
    wait_until(lambda: service.get(f"/api/orders/{uid}").status == 200, timeout_s=60, what="the order stored")
    stored_at = time.monotonic()
    # The snapshot is at most 1 s old (internal/api/snapshots.py): within a bound of 1 s plus one
    # query and a request, the home page lists the order. A bounded wait, not a sleep.
    wait_until(
        lambda: f"/orders/{uid}" in service.get("/").body.decode(), timeout_s=2.5, what="home listing it"
    )
    assert time.monotonic() - stored_at < 2.5


def test_the_home_page_revalidates_with_its_etag_until_an_order_changes_it(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    ingest(tmp_path, topics, kafka_brokers, service, n=1, seed=74)
    first = service.get("/")
    etag = first.headers["ETag"]
    # The snapshot is read again every second, but its body (and so its hash) stays while no order comes.
    for _ in range(3):
        again = service.get("/", headers={"If-None-Match": etag})
        assert (again.status, again.body) == (304, b"")
        assert_page_headers(again, "home 304")
    data = make_input(tmp_path, 1, invalid_rate=0.0, seed=75)
    (uid,) = data.valid
    produce(data.path, topics.orders, kafka_brokers)

    def new_page() -> HttpAnswer | None:
        answer = service.get("/", headers={"If-None-Match": etag})
        return answer if answer.status == 200 else None

    changed = wait_until(new_page, timeout_s=60, what="a new home page")
    assert f"/orders/{uid}" in changed.body.decode()
    assert changed.headers["ETag"] != etag


def sent_spellings(created: datetime) -> list[str]:
    """The instant ``created`` (UTC, whole seconds) written with other offsets and 0-9 fraction digits."""
    spellings = []
    for n, minutes in enumerate([0, 180, -570, 840, -720, 345, 0, 0, 60, -60]):
        zone = "Z" if minutes == 0 else f"{'+-'[minutes < 0]}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
        local = (created + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S")
        spellings.append(f"{local}{'.' + '000000000'[:n] if n else ''}{zone}")
    return spellings


def test_date_created_is_served_and_shown_as_sent_from_the_cache_and_from_the_database(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    """Z, +03:00, -09:30, +14:00, -12:00, +05:45 and 0-9 fraction digits: the consumer's cached copy and
    the copy PostgreSQL assembles after a restart are the same bytes, the text as sent, and the page
    shows the time with its offset."""
    docs = []
    for n in range(10):
        doc = order_doc(800 + n, seed=17)
        created = datetime.fromisoformat(doc["date_created"]).replace(microsecond=0)
        doc["date_created"] = sent_spellings(created)[n]
        docs.append(doc)
    path = tmp_path / "as-sent.json"
    path.write_text(json.dumps(docs), encoding="utf-8")
    cold = {**service_env, "CACHE_WARMUP_ORDERS": "0"}
    first = start_service(cold, name="first")
    produce(path, topics.orders, kafka_brokers)
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, len(docs), timeout_s=60, services=[first]
    )
    cached: dict[str, tuple[bytes, str]] = {}
    for doc in docs:
        answer = first.get(f"/api/orders/{doc['order_uid']}")
        assert (answer.status, answer.headers["X-Cache"]) == (200, "HIT")
        assert json.loads(answer.body)["date_created"] == doc["date_created"]
        cached[doc["order_uid"]] = (answer.body, answer.headers["ETag"])
    assert first.stop() == 0
    second = start_service(cold, name="second")  # no warm-up: every look-up reads PostgreSQL
    for doc in docs:
        sent = doc["date_created"]
        answer = second.get(f"/api/orders/{doc['order_uid']}")
        assert (answer.status, answer.headers["X-Cache"]) == (200, "MISS")
        assert (answer.body, answer.headers["ETag"]) == cached[doc["order_uid"]]
        page = second.get(f"/orders/{doc['order_uid']}").body.decode()
        zone = "UTC" if sent.endswith("Z") else sent[-6:]
        assert f"<dd>{sent[:10]} {sent[11:19]} {zone} <span" in page
        assert f'<span class="raw">{sent}</span>' in page
    assert second.stop() == 0
