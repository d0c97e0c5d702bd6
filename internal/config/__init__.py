"""Configuration: frozen settings and their loader (defaults < config.yaml < environment)."""

from internal.config.loader import ConfigError, config_path, env_name, load_settings
from internal.config.settings import Settings

__all__ = ["ConfigError", "Settings", "config_path", "env_name", "load_settings"]
