"""How every command finds its settings: one option and one loader for l0-service, l0-producer and l0-dlq.

The commands once read their configuration three ways (a config file and the original's aliases for the
service, the environment alone for the dead-letter tool, raw variables with other defaults for the
producer), so a user's config.yaml reached the service but not the tools. Now each command adds
``--config`` with :func:`add_config_option` and loads with :func:`settings_for`: ``--config`` >
``$CONFIG_FILE`` > ``./config.yaml``, then the environment (the original's names included); a command's
own flags override both. A bad setting stops any command the same way: :meth:`ConfigError.lines` on
stderr, exit code 2, no stack trace.
"""

from __future__ import annotations

import argparse
import sys

from internal.config.loader import ConfigError, config_path, load_settings
from internal.config.settings import Settings

EXIT_CONFIG = 2
CONFIG_HELP = "YAML settings file (default: $CONFIG_FILE, else ./config.yaml if present)"


def add_config_option(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--config PATH`` (and any further spellings, e.g. the producer's Go-style ``-config``)."""
    parser.add_argument(*names, "--config", dest="config", metavar="PATH", help=CONFIG_HELP)


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings a command runs with; a bad one ends the command: its lines on stderr, exit code 2."""
    try:
        return load_settings(config_path(getattr(args, "config", None)))
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
