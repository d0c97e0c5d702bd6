"""Print one setting as the service would see it: ``python -m internal.config.value http.port``.

The shell scripts (scripts/run.sh, scripts/prometheus.sh) need the service's HTTP port for its URL
and the scrape target. Asking the loader itself keeps config.yaml, the environment and the original's
variable names (internal/config/aliases.py) in one place instead of re-implementing them in bash.
A configuration error prints the same lines as the service and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from internal.config.cli import settings_for


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].count(".") != 1:
        print("usage: python -m internal.config.value SECTION.KEY", file=sys.stderr)
        return 2
    settings = settings_for(argparse.Namespace(config=None))
    section, key = argv[0].split(".")
    try:
        print(getattr(getattr(settings, section), key))
    except AttributeError:
        print(f"config: {argv[0]}: no such setting", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
