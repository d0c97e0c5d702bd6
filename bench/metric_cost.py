"""What recording one HTTP request's metrics costs: the service's collector against prometheus_client.

``internal/pkg/metrics.HttpRequests`` keeps ``http_requests_total`` and ``http_request_duration_seconds``
in plain dicts instead of prometheus_client's Counter and Histogram; docs/performance.md keeps it only
while this shows it is worth its code. Three ways of recording the same request:

* ``collector``: ``HttpRequests.record`` (what the service does);
* ``children``: prometheus_client, the labelled children kept in a dict (its cheapest use);
* ``labels``: prometheus_client, ``labels()`` resolved on every request.

    python -m bench.metric_cost               # best of 7 timeit runs, microseconds per request
    python -m bench.metric_cost children 20000  # N records only: run under valgrind --tool=callgrind
                                                # with N and with 0, the difference / N is instructions
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from internal.pkg.metrics import FAST, HttpRequests

Record = Callable[[str, str, int, float], None]
REQUEST = ("GET", "/api/orders/{order_uid}", 200, 0.00042)


def library(keep_children: bool) -> Record:
    registry = CollectorRegistry()
    requests = Counter("http_requests_total", "x", ["method", "route", "status"], registry=registry)
    durations = Histogram(
        "http_request_duration_seconds", "x", ["method", "route"], buckets=FAST, registry=registry
    )
    kept: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(method: str, route: str, status: int, seconds: float) -> None:
        children = kept.get((method, route, status)) if keep_children else None
        if children is None:
            children = (requests.labels(method, route, str(status)), durations.labels(method, route))
            if keep_children:
                kept[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    return record


WAYS: dict[str, Callable[[], Record]] = {
    "collector": lambda: HttpRequests(FAST).record,
    "children": lambda: library(keep_children=True),
    "labels": lambda: library(keep_children=False),
}


def main(argv: list[str]) -> int:
    if len(argv) == 2:  # one way, N times, nothing printed: for an instruction count
        record = WAYS[argv[0]]()
        for _ in range(int(argv[1])):
            record(*REQUEST)
        return 0
    n = 200_000
    for name, make in WAYS.items():
        record = make()

        def once(record: Record = record) -> None:
            record(*REQUEST)

        best = min(timeit.repeat(once, number=n, repeat=7)) / n
        print(f"{name:9} {best * 1e6:.2f} us a request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
