"""Bounded requests (internal/api/request_limits.py): a request line or headers over the limits are
refused with 414/431 before the application runs, and the service goes on serving everyone else.

Requests are written on raw sockets, byte for byte, so nothing on the client side trims or refuses them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from tests.service_proc import ServiceProcess, StartService

pytestmark = pytest.mark.e2e
LIMITS = {"HTTP_MAX_REQUEST_LINE_BYTES": "8192", "HTTP_MAX_HEADERS": "100", "HTTP_MAX_HEADER_BYTES": "32768"}


@pytest.fixture
def service(service_env: dict[str, str], start_service: StartService) -> ServiceProcess:
    return start_service({**service_env, **LIMITS})


def exchange(service: ServiceProcess, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (without its final blank line) and read the whole answer until the server closes
    or it is complete; the status, the lower-cased headers and the body."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        # Refused and closed while we were still writing: the answer is already there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + b"\r\n")
        received = b""
        while b"\r\n\r\n" not in received or len(received) < _expected_length(received):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head_text, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head_text.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
    return int(status_line.split()[1]), headers, body


def _expected_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(received) + 1


def get(path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


CASES = {
    "one 4 MiB header": (get("/healthz", [("X-Big", "a" * (4 << 20))]), 431),
    "200 headers of 8,000 bytes": (get("/healthz", [(f"X-H{i}", "b" * 8000) for i in range(200)]), 431),
    "101 small headers": (get("/healthz", [(f"X-H{i}", "c") for i in range(100)]), 431),
    "headers of 32 KiB + 1 in all": (get("/api/orders/x", [("X-Big", "d" * (32768 - 5 - 2))]), 431),
    "a request target of 8 KiB + 1": (get("/api/orders/" + "e" * (8193 - 12), []), 414),
    "a request target of 1 MiB": (get("/order/" + "f" * (1 << 20), []), 414),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_head_over_the_limits_is_refused_and_the_service_serves_on(
    case: str, service: ServiceProcess
) -> None:
    head, status = CASES[case]
    got, headers, body = exchange(service, head)
    assert got == status, body[:200]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["status"] == status
    assert service.get("/healthz").status == 200  # everyone else is still served


def test_a_head_just_within_the_limits_is_served(service: ServiceProcess) -> None:
    """The edges themselves are allowed: 100 headers, 32 KiB of them, an 8 KiB target."""
    target = "/api/orders/" + "g" * (8192 - 12)
    small = [(f"X{i:02d}", "") for i in range(98)]
    host = len("Host") + len("127.0.0.1")
    big = ("X-Big", "h" * (32768 - host - len("X-Big") - sum(len(k) for k, _ in small)))
    fields = [big, *small]
    assert len(fields) + 1 == 100
    assert host + sum(len(k) + len(v) for k, v in fields) == 32768
    status, headers, body = exchange(service, get(target, fields))
    assert status not in (414, 431), body[:200]
    assert status < 500
    assert "x-request-id" in headers  # the application answered


def edge_head() -> bytes:
    """A head exactly at the limits: 100 fields, 32 KiB of them, an 8 KiB target."""
    small = [(f"X{i:02d}", "") for i in range(98)]
    host = len("Host") + len("127.0.0.1")
    big = ("X-Big", "h" * (32768 - host - len("X-Big") - sum(len(k) for k, _ in small)))
    return get("/api/orders/" + "g" * (8192 - 12), [big, *small])


def test_a_head_at_the_limits_in_many_small_reads_is_served(service: ServiceProcess) -> None:
    """Split into 1 KiB writes (each its own segment, with no delay between them merged away by
    Nagle), the raw head - framing included - must never count as over the limits."""
    head = edge_head() + b"\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(head), 1024):
            sock.sendall(head[start : start + 1024])
            time.sleep(0.002)  # separate reads on the server, not synchronisation: nothing waits on it
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status not in (414, 431), answer[:300]
    assert b"x-request-id" in answer.lower()


def test_pipelined_requests_of_any_number_are_all_answered(service: ServiceProcess) -> None:
    """2,000 small requests in one write (~90 KB, more than any one head may be): every one answered,
    none refused - finished heads never add up."""
    one = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"p" * 30 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=60) as sock:
        sock.sendall(one * 2000)
        answer = b""
        while answer.count(b"HTTP/1.1 ") < 2000:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 ") == 2000
    assert b" 431 " not in answer
