#!/usr/bin/env python3
"""Run the L0 order service (HTTP + Kafka consumer); see `cmd/service.py --help`."""

from internal.app import main

if __name__ == "__main__":
    raise SystemExit(main())
