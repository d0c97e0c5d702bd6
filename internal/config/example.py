"""Renders config.yaml.example from the settings dataclasses, so the example can never drift.

``python -m internal.config.example > config.yaml.example`` (``make config-example``) writes it; a unit
test fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import dataclasses
import json

from internal.config.aliases import DSN_PARTS, DSN_VARIABLE, ENV_ALIASES
from internal.config.loader import env_name
from internal.config.settings import Settings

HEADER = """\
# L0 order service configuration. Copy to config.yaml and change what you need.
# Read by every command - l0-service, l0-producer and l0-dlq - from --config PATH, else $CONFIG_FILE,
# else ./config.yaml. Precedence: built-in defaults < this file < environment variables < a command's flags.
# Every key is shown with its default; the environment variable that overrides it is named after it.
# An unknown key, a wrong type or an invalid value stops any command with one line naming the key (exit 2).
# Generated from internal/config/settings.py by `make config-example`; do not edit by hand.
"""


def render_example() -> str:
    lines = [HEADER]
    for section in dataclasses.fields(Settings):
        lines.append(f"{section.name}:")
        default_section = getattr(Settings(), section.name)
        for item in dataclasses.fields(default_section):
            value = getattr(default_section, item.name)
            lines.append(f"  # {item.metadata['help']} ({_variables(env_name(section.name, item.name))})")
            lines.append(f"  {item.name}: {_yaml_scalar(value)}")
        lines.append("")
    return "\n".join(lines)


def _variables(name: str) -> str:
    """The setting's variable, and the original service's name for it where it has one."""
    originals = [alias.original for alias in ENV_ALIASES if alias.ours == name]
    if originals:
        return f"env {name}, or the original's {', '.join(originals)}"
    if name == DSN_VARIABLE:
        return f"env {name}; without it, the original's {'/'.join(DSN_PARTS)} replace its parts"
    return f"env {name}"


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid YAML string


if __name__ == "__main__":
    print(render_example(), end="")
