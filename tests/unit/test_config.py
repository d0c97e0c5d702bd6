"""Config: defaults < file < env, and every kind of mistake stops the start with one line, exit 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from internal.app import main
from internal.config import ConfigError, Settings, load_settings
from internal.config.example import render_example
from internal.config.settings import secret_of
from internal.config.show import describe, secret_values
from internal.domain.validation import ValidationPolicy

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env() -> None:
    assert load_settings(None, environ={}) == Settings()


def test_file_overrides_defaults_and_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 9000\nconsumer:\n  workers: 2\n")
    settings = load_settings(path, environ={"CONSUMER_WORKERS": "7"})
    assert settings.http.port == 9000  # from the file
    assert settings.consumer.workers == 7  # env wins over the file
    assert settings.consumer.batch_max_messages == Settings().consumer.batch_max_messages  # default


def test_env_parses_booleans_and_numbers() -> None:
    settings = load_settings(
        None, environ={"POSTGRES_MIGRATE_ON_START": "false", "SHUTDOWN_TIMEOUT_S": "12.5"}
    )
    assert settings.postgres.migrate_on_start is False
    assert settings.shutdown.timeout_s == 12.5


def test_dlq_topic_defaults_to_topic_dot_dlq() -> None:
    assert load_settings(None, environ={"KAFKA_TOPIC": "o2"}).dlq_topic == "o2.dlq"


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("http:\n  prot: 1\n", {}, "http.prot"),  # unknown key
        ("htp:\n  port: 1\n", {}, "htp"),  # unknown section
        ('http:\n  port: "8080"\n', {}, "http.port"),  # wrong type in the file
        ("consumer:\n  workers: true\n", {}, "consumer.workers"),  # a bool is not an int
        ("", {"HTTP_PORT": "eighty"}, "http.port"),  # wrong type in the env
        ("cache:\n  max_bytes: -1\n", {}, "cache.max_bytes"),  # negative size
        ("", {"LOG_LEVEL": "loud"}, "log.level"),  # unknown log level
        ("", {"POSTGRES_DSN": "not a dsn"}, "postgres.dsn"),  # malformed DSN
        ("", {"POSTGRES_DSN": "host=db port=abc"}, "postgres.dsn"),
        ("", {"POSTGRES_MIGRATE_ON_START": "maybe"}, "postgres.migrate_on_start"),
        ("postgres:\n  pool_min_size: 5\n  pool_max_size: 2\n", {}, "postgres.pool_min_size"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ=env)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert "\n" not in str(caught.value)


def test_dsn_errors_do_not_echo_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"POSTGRES_DSN": "host=db port=abc password=s3cret"})
    assert "s3cret" not in str(caught.value)


def test_service_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "consumer:\n  workers: -3\n")
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(path), "check-config"])
    assert stop.value.code == 2  # a bad setting ends every command the same way
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["config: consumer.workers: must be >= 1 (got -3) (" + str(path) + ")"]


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_settings(write(tmp_path, "http:\n  port: [\n"), environ={})


def test_example_file_is_generated_from_the_settings() -> None:
    committed = (ROOT / "config.yaml.example").read_text(encoding="utf-8")
    assert committed == render_example(), "config.yaml.example is stale: run `make config-example`"


def test_example_file_loads_to_the_defaults() -> None:
    assert load_settings(ROOT / "config.yaml.example", environ={}) == Settings()


PASSWORD = "Zq8-distinctive-S3cret"  # noqa: S105 - the secret the tests look for


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://orders:{PASSWORD}@db:5432/orders",
        f"host=db user=orders password={PASSWORD} dbname=orders sslpassword={PASSWORD}x",
        f"postgresql://orders:{PASSWORD}@db:5432/orders?sslpassword={PASSWORD}",
    ],
)
def test_check_config_masks_the_dsn_password(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSTGRES_DSN", dsn)
        patch.setenv("CONFIG_FILE", "")
        # Logging would be bound to this test's captured stdout, closed after it: later tests' loggers
        # would write to a closed file.
        patch.setattr("internal.app.configure_logging", lambda *_args, **_kw: None)
        assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    (shown,) = [line for line in out.splitlines() if line.strip().startswith("postgres.dsn:")]
    assert "password=********" in shown
    assert "host=db" in shown  # the rest stays readable


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://orders:{PASSWORD}%zz@db/orders",  # libpq: invalid percent-encoded token: "..."
        f"host=db password={PASSWORD} {PASSWORD}",  # libpq: missing "=" after "..."
        f"postgresql://orders:{PASSWORD}@[::1/orders",  # libpq quotes the whole URI
    ],
)
def test_a_malformed_dsn_is_refused_without_repeating_it(dsn: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"POSTGRES_DSN": dsn})
    assert caught.value.key == "postgres.dsn"
    assert PASSWORD not in str(caught.value)


def test_every_setting_marked_secret_is_masked_and_collected() -> None:
    settings = load_settings(None, environ={"POSTGRES_DSN": f"postgresql://u:{PASSWORD}@db/x"})
    lines = describe(settings)
    assert len(lines) == sum(
        len(dataclasses.fields(getattr(settings, s.name))) for s in dataclasses.fields(settings)
    )
    assert PASSWORD not in "\n".join(lines)
    assert secret_values(settings) == [PASSWORD]
    marked = [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(Settings)
        for f in dataclasses.fields(getattr(Settings(), s.name))
        if secret_of(f)
    ]
    # A new secret setting is marked with a Secret (settings.py).
    assert marked == ["postgres.dsn", "console.operator_token"]


def test_a_malformed_dsn_with_an_alias_part_is_refused_without_repeating_it(tmp_path: Path) -> None:
    """A malformed postgres.dsn in the file, a part of it from POSTGRES_USER (issue 13's aliases):
    refused as a bad DSN, not a traceback quoting the password."""
    path = write(tmp_path, f'postgres:\n  dsn: "postgresql://u:{PASSWORD}%zz@h/db"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"POSTGRES_USER": "someone"})
    assert caught.value.key == "postgres.dsn"
    assert PASSWORD not in str(caught.value)


def test_the_validation_settings_are_the_validation_policy() -> None:
    """consumer.* holds every knob of ValidationPolicy under its name and with its default (settings.py
    takes them from the domain), and the service's policy is built from the settings."""
    consumer = Settings().consumer
    assert consumer.validation_policy() == ValidationPolicy()
    for knob in dataclasses.fields(ValidationPolicy):
        value = getattr(consumer, knob.name)
        changed = not value if isinstance(value, bool) else value + 1
        policy = dataclasses.replace(consumer, **{knob.name: changed}).validation_policy()
        assert getattr(policy, knob.name) == changed, knob.name
