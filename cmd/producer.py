#!/usr/bin/env python3
"""Replay an orders file into Kafka; the logic lives in internal.tools.producer (see docs/producer.md)."""

from internal.tools.producer import main

raise SystemExit(main())
