"""The Grafana dashboard and the Prometheus alert rules: real metrics only, complete, and tied to the runbook.

* every metric a panel or a rule queries is one the service exports (``METRIC_NAMES``; a histogram's
  ``_bucket``/``_sum``/``_count`` series count as the histogram), and the dashboard shows every one;
* the dashboard is a loadable Grafana model: one data source, unique ids, panels inside the 24-column
  grid and not on top of each other, the panels the operators asked for;
* every alert has ``for:``, a severity, summary, description and a ``runbook`` annotation whose anchor
  is a section of docs/runbook.md;
* (tests/integration/test_alert_rules.py runs promtool on the rules and their unit tests: it needs a
  program the project installs, and a unit test installs nothing.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from internal.pkg.metrics import METRIC_NAMES
from tests.unit.test_deploy_files import metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "configs" / "grafana" / "dashboards" / "orders.json"
ALERTS = ROOT / "configs" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "configs" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
PROMETHEUS_SERIES = {"up"}  # made by Prometheus for every scrape target
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge", "text"}
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "ServiceDown",
    "ConsumerPausedByOutage",
    "DatabaseDown",
    "ConsumerLagHighAndGrowing",
    "DeadLettersNotInvalid",
    "HighHttp5xxRatio",
    "PartitionStuck",
    "ConsumerStopped",
    "ServiceRestarting",
    "ConsumerStuck",
    "OrdersNotFresh",
}
# What the operators asked the dashboard for: (what, a pattern some panel's query must match).
REQUIRED_QUERIES = [
    ("ingest rate by outcome", r"^sum by \(outcome\) \(rate\(consumer_messages_total\[1m\]\)\)$"),
    ("lag per partition", r"\bby \(topic, partition\) \(consumer_lag\)"),
    ("stuck partitions", r"\bby \(topic, partition\) \(consumer_partition_stuck\)"),
    ("dead letters by reason", r"sum by \(reason\) \(rate\(dlq_messages_total\["),
    ("batch latency p50", r"histogram_quantile\(0\.5, .*consumer_batch_duration_seconds_bucket"),
    ("batch latency p99", r"histogram_quantile\(0\.99, .*consumer_batch_duration_seconds_bucket"),
    ("message age p99", r"histogram_quantile\(0\.99, .*consumer_message_age_seconds_bucket"),
    ("freshness p50", r"histogram_quantile\(0\.5, .*consumer_order_freshness_seconds_bucket"),
    ("freshness p99", r"histogram_quantile\(0\.99, .*consumer_order_freshness_seconds_bucket"),
    ("freshness objective", r"\bconsumer_freshness_objective_seconds\b"),
    ("HTTP rate by status", r"^sum by \(status\) \(rate\(http_requests_total\[1m\]\)\)$"),
    ("HTTP latency p50 by route", r"histogram_quantile\(0\.5, sum by \(route, le\).*http_request_duration"),
    ("HTTP latency p99 by route", r"histogram_quantile\(0\.99, sum by \(route, le\).*http_request_duration"),
    ("5xx ratio", r'http_requests_total\{status=~"5\.\.".*\) / sum\(rate\(http_requests_total'),
    ("cache hit ratio", r"cache_hits_total.*/ \(sum\(rate\(cache_hits_total.*cache_misses_total"),
    ("cache bytes", r"\bcache_bytes\b"),
    ("cache entries", r"\bcache_entries\b"),
    ("database up", r"\bdb_up\b"),
    ("database latency p99 by op", r"histogram_quantile\(0\.99, sum by \(op, le\).*db_query_duration"),
    ("database transient errors", r"rate\(db_transient_errors_total\["),
    ("consumer paused", r"\bconsumer_paused\b"),
    ("retries", r"rate\(consumer_retries_total\["),
    ("build info", r"\bl0_build_info\b"),
]


# ----------------------------------------------------------------------------------------------- helpers


def histograms() -> set[str]:
    """The histograms of docs/metrics.md (its table has a type column)."""
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+) \|", METRICS_DOC.read_text(encoding="utf-8"), re.M)
    assert {name for name, _ in rows} == set(METRIC_NAMES), "docs/metrics.md and METRIC_NAMES differ"
    return {name for name, kind in rows if kind == "histogram"}


def base_metric(series: str) -> str:
    """The metric a series belongs to: a histogram's _bucket/_sum/_count series count as it."""
    for suffix in HISTOGRAM_SERIES:
        if series.endswith(suffix) and series.removesuffix(suffix) in histograms():
            return series.removesuffix(suffix)
    return series


def unknown_series(expr: str, allowed: set[str]) -> set[str]:
    return {name for name in metric_names(expr) if base_metric(name) not in allowed}


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    explicit = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    headings = {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}
    return explicit | headings


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(all_panels(dashboard["panels"]))


@pytest.fixture(scope="module")
def queries(panels: list[dict[str, Any]]) -> list[str]:
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


# --------------------------------------------------------------------------------------------- metrics


def test_histograms_are_recognised() -> None:
    assert base_metric("consumer_batch_duration_seconds_bucket") == "consumer_batch_duration_seconds"
    assert base_metric("http_request_duration_seconds_count") == "http_request_duration_seconds"
    assert base_metric("cache_bytes_sum") == "cache_bytes_sum"  # a gauge has no _sum series
    assert unknown_series("sum(rate(consumer_lag_bucket[1m]))", set(METRIC_NAMES)) == {"consumer_lag_bucket"}


def test_dashboard_queries_only_exported_metrics(queries: list[str]) -> None:
    assert queries
    for expr in queries:
        assert not unknown_series(expr, set(METRIC_NAMES)), (
            f"{expr}: {unknown_series(expr, set(METRIC_NAMES))}"
        )


def test_dashboard_shows_every_metric(queries: list[str]) -> None:
    shown = {base_metric(name) for expr in queries for name in metric_names(expr)}
    assert set(METRIC_NAMES) <= shown, f"no panel shows {sorted(set(METRIC_NAMES) - shown)}"


@pytest.mark.parametrize(("what", "pattern"), REQUIRED_QUERIES, ids=[what for what, _ in REQUIRED_QUERIES])
def test_dashboard_has_the_panel(queries: list[str], what: str, pattern: str) -> None:
    assert any(re.search(pattern, expr) for expr in queries), f"no panel for {what}"


def test_alerts_query_only_exported_metrics(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        unknown = unknown_series(rule["expr"], set(METRIC_NAMES) | PROMETHEUS_SERIES)
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"


# ------------------------------------------------------------------------------------------- dashboard


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert (dashboard["uid"], dashboard["title"]) == ("l0-orders", "L0 orders")
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["editable"] is False  # provisioned: changes belong in this file


def test_panels_use_the_one_datasource_and_unique_ids(panels: list[dict[str, Any]]) -> None:
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel.get("title"), panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']}: no query"
        assert len({t["refId"] for t in targets}) == len(targets), f"{panel['title']}: duplicate refId"
        for target in targets:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_panels_fit_the_grid_without_overlapping(panels: list[dict[str, Any]]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]
        assert 0 <= grid["y"] < grid["y"] + grid["h"], panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_rows_come_before_their_panels(dashboard: dict[str, Any]) -> None:
    tops = [panel["gridPos"]["y"] for panel in dashboard["panels"]]
    assert tops == sorted(tops), "panels are listed top to bottom"
    assert dashboard["panels"][0]["type"] == "row"


# ---------------------------------------------------------------------------------------------- alerts


def test_the_required_alerts_exist(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) >= REQUIRED_ALERTS, f"missing {sorted(REQUIRED_ALERTS - set(names))}"


def test_every_alert_is_complete_and_points_at_the_runbook(rules: list[dict[str, Any]]) -> None:
    anchors = runbook_anchors()
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: needs for:"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key), f"{name}: needs the {key} annotation"
        match = re.fullmatch(r"docs/runbook\.md#([a-z0-9-]+)", annotations["runbook"])
        assert match, f"{name}: runbook must be docs/runbook.md#<anchor>, got {annotations['runbook']}"
        assert match[1] in anchors, f"{name}: docs/runbook.md has no section #{match[1]}"


def test_alert_rules_have_unit_tests_for_each_alert(rules: list[dict[str, Any]]) -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [ALERTS.name]
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested >= {rule["alert"] for rule in rules}, "every alert needs a firing case in alerts_test.yml"


# --------------------------------------------------------------------------------------------- runbook


def test_runbook_sections_go_symptoms_checks_actions() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    required = {
        "lag-growing",
        "dlq-growing",
        "db-down",
        "kafka-down",
        "cache-cold",
        "stuck-consumer",
        "partition-stuck",
        "dlq-refuses",
    }
    assert required <= runbook_anchors()
    for anchor in re.findall(r'<a id="([^"]+)"></a>\n\n## ', text):
        section = text.split(f'<a id="{anchor}"></a>', 1)[1].split("\n## ", 2)[1]
        positions = [section.find(f"**{part}.**") for part in ("Symptoms", "Checks", "Actions")]
        assert -1 not in positions, f"#{anchor}: needs **Symptoms.**, **Checks.** and **Actions.**"
        assert positions == sorted(positions), f"#{anchor}: Symptoms, then Checks, then Actions"
