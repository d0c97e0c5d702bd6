"""Loads Settings with the precedence defaults < config file < environment.

Any unknown key, wrong type or invalid value raises ``ConfigError`` naming the key; ``cmd/service.py``
prints it as one line and exits with code 2. Booleans and numbers are not guessed from strings in the
YAML file (``port: "8080"`` is a type error), but environment variables are text by nature and are
parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import yaml

from internal.config import aliases
from internal.config.settings import Settings, secret_of

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key."""

    def __init__(self, key: str, problem: str, source: str = "", hints: tuple[str, ...] = ()) -> None:
        self.key = key
        self.hints = hints  # lines that tell what to write instead (the original service's keys)
        where = f" ({source})" if source else ""
        super().__init__(f"{key}: {problem}{where}")

    def lines(self) -> list[str]:
        """What the programs print before they exit with code 2."""
        return [f"config: {self}", *(f"config: hint: {hint}" for hint in self.hints)]


def env_name(section: str, key: str) -> str:
    return f"{section}_{key}".upper()


def environment_names() -> list[str]:
    """Every environment variable the settings are read from: ours, the original's aliases and DSN parts,
    and CONFIG_FILE (for tests and tools that must start from a clean environment)."""
    ours = [
        env_name(section.name, item.name)
        for section in dataclasses.fields(Settings)
        for item in dataclasses.fields(_section_class(section.name))
    ]
    originals = [alias.original for alias in aliases.ENV_ALIASES]
    return ["CONFIG_FILE", *ours, *originals, *aliases.DSN_PARTS]


def config_path(arg: str | None) -> Path | None:
    """The config file: ``--config``, else $CONFIG_FILE (set but empty: none), else ./config.yaml if any."""
    if arg:
        return Path(arg)
    if "CONFIG_FILE" in os.environ:  # set but empty means "no file, defaults and environment only"
        env = os.environ["CONFIG_FILE"]
        return Path(env) if env else None
    default = Path("config.yaml")
    return default if default.exists() else None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, then the YAML file at ``path`` (if given), then ``environ``."""
    try:
        names = aliases.resolve(os.environ if environ is None else environ)
    except aliases.AliasConflict as exc:
        raise ConfigError(_key_of(exc.ours), str(exc)) from None
    env = names.environ
    file_values = _read_file(path) if path is not None else {}
    _refuse_unknown_keys(file_values, str(path))
    sections: dict[str, Any] = {}
    for section_field in dataclasses.fields(Settings):
        section_cls = _section_class(section_field.name)
        raw_section = file_values.pop(section_field.name, {})
        if not isinstance(raw_section, dict):
            raise ConfigError(section_field.name, "must be a mapping of keys", str(path))
        values: dict[str, Any] = {}
        for item in dataclasses.fields(section_cls):
            key = f"{section_field.name}.{item.name}"
            default = item.default
            source = "default"
            if item.name in raw_section:
                values[item.name] = _from_file(key, raw_section.pop(item.name), type(default), str(path))
                source = str(path)
            name = env_name(section_field.name, item.name)
            if name in env:
                values[item.name] = _from_env(key, env[name], type(default), names.source(name))
                source = f"env {names.source(name)}"
            elif key == "postgres.dsn" and names.dsn_parts:
                source = f"env {', '.join(names.dsn_parts)}"
                values[item.name] = _with_dsn_parts(values.get(item.name, default), names, source)
            value = values.get(item.name, default)
            check = item.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                shown = "" if secret_of(item) else f" (got {value!r})"  # never a secret
                raise ConfigError(key, f"{problem}{shown}", source)
        sections[section_field.name] = section_cls(**values)
    settings = Settings(**sections)
    _check_across_fields(settings)
    return settings


def _refuse_unknown_keys(file_values: dict[str, Any], source: str) -> None:
    """Every key of the file that is not a setting, at once: a config.yaml written for the original
    service has several, and each of those gets a hint naming what to write here instead."""
    known = {
        f.name: {item.name for item in dataclasses.fields(_section_class(f.name))}
        for f in dataclasses.fields(Settings)
    }
    sections = sorted(name for name in file_values if name not in known)
    keys = sorted(
        f"{name}.{key}"
        for name, body in file_values.items()
        if isinstance(body, dict)
        for key in body
        if name not in known or key not in known[name]
    )
    if not keys and not sections:
        return
    # A section that is a mapping is named by its keys; an empty or scalar one by itself.
    bare = [name for name in sections if not (isinstance(file_values[name], dict) and file_values[name])]
    hints = tuple(hint for key in sorted([*keys, *bare]) if (hint := aliases.hint_for(key)))
    in_known = [key for key in keys if key.split(".", 1)[0] in known]
    if in_known:
        raise ConfigError(in_known[0], "unknown key", source, hints)
    raise ConfigError(sections[0], "unknown section", source, hints)


def _with_dsn_parts(dsn: str, names: aliases.Resolved, source: str) -> str:
    try:
        return aliases.with_parts(dsn, names.dsn_parts)
    except ValueError as exc:
        raise ConfigError("postgres.dsn", str(exc), source) from None
    except psycopg.Error:
        # The DSN itself is malformed: its own check reports it, without libpq's message, which quotes
        # the part it could not read - possibly the password.
        return dsn


def _key_of(variable: str) -> str:
    """The setting whose environment variable is ``variable`` (for errors about the variable)."""
    for section in dataclasses.fields(Settings):
        for item in dataclasses.fields(_section_class(section.name)):
            if env_name(section.name, item.name) == variable:
                return f"{section.name}.{item.name}"
    return variable


def _section_class(name: str) -> type[Any]:
    # Each section's default_factory is the section's dataclass itself.
    return next(f for f in dataclasses.fields(Settings) if f.name == name).default_factory  # type: ignore[return-value]


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config file", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("config file", f"{path} is not valid YAML{at}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config file", f"{path} must hold a mapping of sections")
    return data


def _from_file(key: str, value: Any, wanted: type, source: str) -> Any:
    if wanted is float and type(value) is int:
        return float(value)
    if type(value) is not wanted:
        raise ConfigError(
            key, f"must be {_type_word(wanted)}, got {_type_word(type(value))} {value!r}", source
        )
    return value


def _from_env(key: str, text: str, wanted: type, name: str) -> Any:
    source = f"env {name}"
    if wanted is str:
        return text
    if wanted is bool:
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(key, f"must be true or false, got {text!r}", source)
    try:
        return wanted(text.strip())
    except ValueError:
        raise ConfigError(key, f"must be {_type_word(wanted)}, got {text!r}", source) from None


def _type_word(kind: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)


def _check_across_fields(settings: Settings) -> None:
    if settings.postgres.pool_min_size > settings.postgres.pool_max_size:
        raise ConfigError("postgres.pool_min_size", "must not exceed postgres.pool_max_size")
    if settings.consumer.retry_initial_ms > settings.consumer.retry_max_ms:
        raise ConfigError("consumer.retry_initial_ms", "must not exceed consumer.retry_max_ms")
    if settings.dlq_topic == settings.kafka.topic:
        raise ConfigError("kafka.dlq_topic", "must differ from kafka.topic")
