"""The Prometheus configuration for a Prometheus outside compose, made from configs/prometheus/.

configs/prometheus/prometheus.yml is written for the compose network (target ``app:8080``, rule files
beside it in /etc/prometheus/). ``make up-metric`` (scripts/prometheus.sh) runs Debian's Prometheus on
this machine instead: the same file with the service's address on this machine as the target and the
rule files by absolute path, so that what runs locally is the file that is shipped, not a copy of it.
The live monitoring test (tests/e2e/test_monitoring.py) starts from the same function.

    python -m devtools.monitoring --target 127.0.0.1:8080 --out .local/prometheus/prometheus.yml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast

import yaml

from internal.pkg.paths import project_home


def prometheus_dir() -> Path:
    return project_home() / "configs" / "prometheus"


def local_config(
    target: str,
    *,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    rule_files: list[Path] | None = None,
) -> dict[str, Any]:
    """configs/prometheus/prometheus.yml scraping ``target`` (host:port); ``rule_files`` replace the
    shipped ones (by default those, by absolute path)."""
    source = prometheus_dir() / "prometheus.yml"
    config = cast(dict[str, Any], yaml.safe_load(source.read_text(encoding="utf-8")))
    (job,) = config["scrape_configs"]  # the one job: the order service
    job["static_configs"] = [{"targets": [target]}]
    shipped = [prometheus_dir() / name for name in config.get("rule_files", [])]
    config["rule_files"] = [str(path.resolve()) for path in (shipped if rule_files is None else rule_files)]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
    if evaluation_interval is not None:
        config["global"]["evaluation_interval"] = evaluation_interval
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.monitoring", description="Write the local Prometheus configuration."
    )
    parser.add_argument("--target", required=True, help="the service's host:port, e.g. 127.0.0.1:8080")
    parser.add_argument("--out", required=True, type=Path, help="file to write")
    args = parser.parse_args(argv)
    header = f"# Generated from {prometheus_dir() / 'prometheus.yml'} by devtools/monitoring.py.\n"
    args.out.write_text(header + yaml.safe_dump(local_config(args.target), sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
