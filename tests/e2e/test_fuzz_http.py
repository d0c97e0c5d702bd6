"""Hostile HTTP against the running service: random and malicious paths, uids and query strings
never produce a 5xx while the database is up, and no answer leaks a stack trace."""

from __future__ import annotations

import http.client
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.service_proc import ServiceProcess, StartService

pytestmark = pytest.mark.e2e
HOSTILE = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f",
    "' OR 1=1 --",
    "1; DROP TABLE orders",
    "abc%00def",
    "%ff%fe",
    "<script>alert(1)</script>",
    "a" * 5000,
    "%" * 10,
    "\u202e\u200f",
    "🚚",
    "order_uid=1&x=2",
]
TRACE_MARKERS = (b"Traceback", b'File "', b"psycopg.", b"Exception")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def service(service_env: dict[str, str], start_service: StartService) -> ServiceProcess:
    # Started once per test function; hypothesis then sends all its examples to it.
    return start_service(service_env)


def raw_get(service: ServiceProcess, target: str) -> tuple[int, bytes]:
    """GET with the target sent as is (no client-side normalisation of ../ or %)."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check(status: int, body: bytes, target: str) -> None:
    assert status < 500, f"{target[:200]!r} answered {status}"
    assert not any(marker in body for marker in TRACE_MARKERS), f"{target[:200]!r} leaked internals"


def test_hostile_paths_never_fail_or_leak(service: ServiceProcess) -> None:
    for prefix in ("/api/orders/", "/order/", "/orders/", "/search?q=", "/", "/static/"):
        for payload in HOSTILE:
            raw = prefix + payload
            printable = all(33 <= ord(c) <= 126 for c in raw)  # the request line must stay ASCII
            for target in {
                raw if printable else prefix + quote(payload, safe=""),
                prefix + quote(payload, safe=""),
            }:
                check(*raw_get(service, target), target)


@FUZZ
@given(st.text(min_size=0, max_size=300))
@example("0/")  # once answered 307 to /api/orders/0: a redirect to another uid
def test_random_uids_are_400_or_404(service: ServiceProcess, uid: str) -> None:
    target = "/api/orders/" + quote(uid, safe="")
    status, body = raw_get(service, target)
    check(status, body, target)
    assert status in (400, 404), (uid, status)  # nothing is stored: malformed or unknown


@FUZZ
@given(st.text(max_size=200), st.text(max_size=30), st.text(max_size=8))
@example("a", "i-1", "20")
@example("a", "i9223372036854775808", "100")
@example("a", "u" + "a" * 65, "101")
@example("a", "i" + "9" * 400, "-1")
@example("a", "i\u0661\u0662", "\u0661")  # Arabic-Indic digits: not a cursor
def test_random_search_queries_cursors_and_sizes(
    service: ServiceProcess, query: str, after: str, n: str
) -> None:
    target = f"/search?q={quote(query, safe='')}&after={quote(after, safe='')}&n={quote(n, safe='')}"
    check(*raw_get(service, target), target)


@FUZZ
@given(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300))
@example("*")
@example('W/"x", ,,"')
@example("\xff\x00")
def test_odd_if_none_match_never_fails(service: ServiceProcess, header: str) -> None:
    for target in ("/orders/nosuchorder1", "/api/orders/nosuchorder1", "/"):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("If-None-Match", header.encode("latin-1"))
            conn.endheaders()
            response = conn.getresponse()
            check(response.status, response.read(), f"{target} If-None-Match {header[:50]!r}")
        finally:
            conn.close()
