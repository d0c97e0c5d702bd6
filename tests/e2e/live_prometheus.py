"""A real Prometheus (Debian's, scripts/install-prometheus.sh) scraping a service under test.

Its configuration is made from the shipped one (devtools/monitoring.py: configs/prometheus/
prometheus.yml with the service's address as the target), with two test-only changes so that a test
takes seconds, not the minutes the real rules wait:

* scrape and rule evaluation every second (the real file: 5 s);
* a copy of configs/prometheus/alerts.yml in which every duration - each rule's ``for:`` and every range
  in its expression - is divided by 60: a minute becomes a second, ``for: 5m`` becomes ``for: 5s``,
  ``rate(x[5m])`` becomes ``rate(x[5s])``. The expressions, thresholds, labels and annotations are the
  shipped ones; only the clock runs 60 times faster.

Alert states come from Prometheus' HTTP API (/api/v1/alerts), never from the service.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.monitoring import local_config, prometheus_dir
from tests.service_proc import ROOT, free_port
from tests.support import wait_until

INSTALL = ROOT / "scripts" / "install-prometheus.sh"
TIME_FACTOR = 60
DURATION = re.compile(r"(\d+)([smh])")
SECONDS = {"s": 1, "m": 60, "h": 3600}


def faster(duration: str) -> str:
    """A Prometheus duration divided by TIME_FACTOR, at least one second: "5m" -> "5s"."""
    total = sum(int(n) * SECONDS[unit] for n, unit in DURATION.findall(duration))
    assert DURATION.sub("", duration) == "", f"a duration this test cannot scale: {duration!r}"
    return f"{max(1, total // TIME_FACTOR)}s"


def faster_rules(source: Path) -> dict[str, Any]:
    rules = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = faster(rule["for"])
            rule["expr"] = re.sub(r"\[([0-9smh]+)\]", lambda m: f"[{faster(m.group(1))}]", rule["expr"])
    return dict(rules)


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        install = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900, check=False)
        found = shutil.which("prometheus")
        if found is None:
            pytest.fail(f"prometheus is missing and {INSTALL.name} failed: {install.stderr.strip()}")
    return found


class LivePrometheus:
    def __init__(self, workdir: Path, service_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        rules = workdir / "alerts.yml"
        rules.write_text(yaml.safe_dump(faster_rules(prometheus_dir() / "alerts.yml")), encoding="utf-8")
        config = local_config(
            f"127.0.0.1:{service_port}", scrape_interval="1s", evaluation_interval="1s", rule_files=[rules]
        )
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout_s=60, what="Prometheus to be ready", interval_s=0.1)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; an error answer fails the test with Prometheus' message."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback only
                body = json.load(answer)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def targets_health(self) -> list[str]:
        return [target["health"] for target in self.api("targets")["activeTargets"]]

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        return [
            alert
            for alert in self.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == name and alert["state"] == state
        ]

    def active(self, name: str) -> bool:
        """Pending or firing."""
        return any(alert["labels"]["alertname"] == name for alert in self.api("alerts")["alerts"])

    def log_tail(self, n: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
