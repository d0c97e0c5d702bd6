#!/usr/bin/env python3
"""Inspect and replay the dead-letter topic; the logic lives in internal.tools.dlq (see docs/dlq.md)."""

from internal.tools.dlq import main

raise SystemExit(main())
