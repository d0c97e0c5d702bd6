"""The settings as people may see them: every key with its value, secrets masked by their marker.

``check-config`` prints this (the runbook tells operators to run it, so it must be safe to paste into a
ticket), and the service hands ``secret_values`` to the logging set-up, which blanks them out of every
line it writes.
"""

from __future__ import annotations

import dataclasses
import json

from internal.config.settings import Settings, secret_of


def describe(settings: Settings) -> list[str]:
    """One ``section.key: value`` line per setting, the value as JSON, a secret as its marker shows it."""
    lines = []
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        for item in dataclasses.fields(values):
            value = getattr(values, item.name)
            secret = secret_of(item)
            lines.append(
                f"{section.name}.{item.name}: {json.dumps(secret.shown(value) if secret else value)}"
            )
    return lines


def secret_values(settings: Settings) -> list[str]:
    """Every secret value the settings hold (a DSN's password, a setting marked secret)."""
    found: list[str] = []
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        for item in dataclasses.fields(values):
            secret = secret_of(item)
            if secret is not None:
                found += secret.values(getattr(values, item.name))
    return found
