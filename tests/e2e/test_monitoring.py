"""Monitoring that runs for real: a Prometheus scrapes the running service, every panel query of the
Grafana dashboard answers, and the alerts fire when what they describe happens - and resolve after.

The Prometheus is Debian's, with the shipped configuration and alert rules on a clock 60 times faster
(tests/e2e/live_prometheus.py says exactly what is changed); alert states are read from its HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Topics
from tests.e2e.helpers import make_input, produce, stack, wait_committed_to_end
from tests.e2e.live_prometheus import LivePrometheus
from tests.service_proc import ROOT, ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e
DASHBOARD = ROOT / "configs" / "grafana" / "dashboards" / "orders.json"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, query) of every panel of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture
def live_prometheus(tmp_path: Path) -> Iterator[Callable[[ServiceProcess], LivePrometheus]]:
    started: list[LivePrometheus] = []

    def start(service: ServiceProcess) -> LivePrometheus:
        prometheus = LivePrometheus(tmp_path / f"prometheus-{len(started)}", service.port)
        started.append(prometheus)
        wait_until(lambda: prometheus.targets_health() == ["up"], timeout_s=30, what="the service scraped")
        return prometheus

    yield start
    for prometheus in started:
        prometheus.stop()


def test_every_dashboard_query_answers_and_the_dead_letter_alert_fires_and_resolves(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
    live_prometheus: Callable[[ServiceProcess], LivePrometheus],
) -> None:
    service = start_service(service_env)
    prometheus = live_prometheus(service)

    # Traffic for every panel: stored orders, invalid ones dead-lettered, look-ups that hit, miss and fail.
    data = make_input(tmp_path, 200, invalid_rate=0.1, seed=51)
    produce(data.path, topics.orders, kafka_brokers)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 200, timeout_s=60, services=[service])
    uid = next(iter(data.valid))
    for path in (
        f"/api/orders/{uid}",
        f"/orders/{uid}",
        "/api/orders/b563feb7b2b84b6test9",
        "/api/orders/x!",
        "/",
    ):
        service.get(path)

    # An error answer fails at once (LivePrometheus.query); an empty one is retried for a while, as a
    # rate needs two scrapes of a series before it has a value.
    missing: list[str] = []

    def every_panel_answers() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in panel_queries() if not prometheus.query(expr)]
        return not missing

    try:
        wait_until(every_panel_answers, timeout_s=30, what="every panel query to answer", interval_s=0.5)
    except AssertionError:
        raise AssertionError(f"panel queries without a result: {missing}") from None
    assert not prometheus.active("DeadLettersNotInvalid")  # invalid letters are expected: no alert

    # Undecodable messages, a few a second, until the dead-letter alert fires for them.
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    trickle = subprocess.Popen(
        [sys.executable, str(ROOT / "cmd" / "producer.py"), "-file", str(empty), "-gibberish", "100000",
         "-rps", "5", "-topic", topics.orders, "-brokers", kafka_brokers],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        (alert,) = firing(prometheus, "DeadLettersNotInvalid")
    finally:
        trickle.terminate()
        trickle.wait(timeout=30)
    assert alert["labels"]["reason"] == "undecodable"
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook"] == "docs/runbook.md#dlq-growing"
    assert "undecodable" in alert["annotations"]["summary"]
    # No more letters: the rate falls to zero and the alert resolves by itself.
    resolved(prometheus, "DeadLettersNotInvalid")
    service.assert_alive()


def test_stopping_postgresql_fires_the_database_alerts_and_they_resolve_after(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
    live_prometheus: Callable[[ServiceProcess], LivePrometheus],
    postgres_restorer: None,
    pg_dsn: str,
) -> None:
    service = start_service({**service_env, "CONSUMER_STUCK_AFTER_S": "1"})
    prometheus = live_prometheus(service)
    before = make_input(tmp_path, 60, invalid_rate=0.0, seed=52)
    produce(before.path, topics.orders, kafka_brokers)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 60, timeout_s=60, services=[service])
    wait_until(lambda: prometheus.query("min(db_up) == 1"), timeout_s=30, what="db_up 1 in Prometheus")

    stack("postgres.sh", "stop", pg_dsn)
    during = make_input(tmp_path, 30, invalid_rate=0.0, seed=53)
    produce(during.path, topics.orders, kafka_brokers)  # messages that wait for the database
    (down,) = firing(prometheus, "DatabaseDown")
    assert down["labels"]["severity"] == "critical"
    assert down["annotations"]["runbook"] == "docs/runbook.md#db-down"
    firing(prometheus, "ConsumerPausedByOutage")
    # The partitions that wait are stuck, and Prometheus sees it; the stuck-partition alert is held back
    # on purpose while the consumer is paused by an outage (ConsumerPausedByOutage speaks for it).
    wait_until(
        lambda: prometheus.query("max(consumer_partition_stuck) == 1"),
        timeout_s=30,
        what="a stuck partition seen by Prometheus",
        interval_s=0.5,
    )
    assert not prometheus.active("PartitionStuck")
    assert service.get("/healthz").status == 200  # an outage is not a reason to restart the service

    stack("postgres.sh", "start", pg_dsn)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 90, timeout_s=90, services=[service])
    for name in ("DatabaseDown", "ConsumerPausedByOutage"):
        resolved(prometheus, name)


def firing(prometheus: LivePrometheus, name: str) -> list[dict[str, Any]]:
    return wait_until(lambda: prometheus.alerts(name), timeout_s=60, what=f"{name} firing", interval_s=0.5)


def resolved(prometheus: LivePrometheus, name: str) -> None:
    wait_until(lambda: not prometheus.active(name), timeout_s=60, what=f"{name} resolved", interval_s=0.5)
