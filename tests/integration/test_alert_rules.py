"""promtool accepts the alert rules and passes their unit tests (configs/prometheus/alerts_test.yml).

promtool comes from Debian's ``prometheus`` package through scripts/install-prometheus.sh, which
``make test`` runs (``make browser``). This test installs nothing: without promtool it fails saying
what to run - it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "configs" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "configs" / "prometheus" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run scripts/install-prometheus.sh (make test does)")
    return found


@pytest.mark.parametrize(
    "args", [["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]], ids=["check", "test"]
)
def test_promtool_accepts_the_rules_and_their_unit_tests(promtool: str, args: list[str]) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
