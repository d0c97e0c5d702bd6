"""The original Go service's environment names and config.yaml keys (internal/config/aliases.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from internal.app import main
from internal.config import ConfigError, Settings, load_settings
from internal.config.aliases import DSN_PARTS, ENV_ALIASES, ORIGINAL_KEYS, Alias, hint_for

ROOT = Path(__file__).resolve().parents[2]
# A config.yaml as the original's README describes it: its sections and the keys it names.
ORIGINAL_CONFIG = """\
http_server:
  port: 8081
  read_timeout: 5s
  write_timeout: 10s
  idle_timeout: 60s
database:
  host: localhost
  port: 5433
  user: postgres
  password: password
  dbname: orders_db
  sslmode: disable
  max_open_conns: 10
  max_idle_conns: 5
kafka:
  bootstrap_servers: localhost:9092
  consumer_group_id: orders-consumer
  topic: orders
  auto_offset_reset: earliest
  enable_auto_commit: false
  isolation_level: read_committed
  poll_interval: 100ms
  fetch_min_bytes: 1
  session_timeout: 10s
  heartbeat_interval: 3s
health:
  db_check_interval: 10s
  db_check_timeout: 2s
consumer:
  worker_count: 4
  job_buffer_size: 100
  max_retries: 3
  retry_backoff: 1s
cache:
  capacity: 1000
"""
OURS = {"HTTP_PORT": "8081", "KAFKA_BROKERS": "b:9092", "KAFKA_GROUP_ID": "g1", "KAFKA_TOPIC": "t1"}


def value_of(settings: Settings, variable: str) -> object:
    section, _, key = variable.lower().partition("_")
    return getattr(getattr(settings, section), key)


@pytest.mark.parametrize("alias", ENV_ALIASES, ids=lambda a: a.original)
def test_an_original_name_sets_our_setting(alias: Alias) -> None:
    original, ours = alias.original, alias.ours
    settings = load_settings(None, {original: OURS[ours]})
    assert str(value_of(settings, ours)) == OURS[ours]


@pytest.mark.parametrize("alias", ENV_ALIASES, ids=lambda a: a.original)
def test_both_names_with_the_same_value_are_fine(alias: Alias) -> None:
    original, ours = alias.original, alias.ours
    settings = load_settings(None, {original: OURS[ours], ours: OURS[ours]})
    assert str(value_of(settings, ours)) == OURS[ours]


@pytest.mark.parametrize("alias", ENV_ALIASES, ids=lambda a: a.original)
def test_both_names_disagreeing_fail_naming_both(alias: Alias) -> None:
    original, ours = alias.original, alias.ours
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {original: OURS[ours], ours: "9999"})
    message = str(caught.value)
    assert original in message
    assert ours in message
    assert caught.value.key == ours.lower().replace("_", ".", 1)


def test_conflict_stops_the_start_with_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONFIG_FILE", "")
    monkeypatch.setenv("HTTP_PORT", "8080")
    monkeypatch.setenv("HTTP_SERVER_PORT", "9090")
    with pytest.raises(SystemExit) as stop:
        main(["check-config"])
    assert stop.value.code == 2  # a bad setting ends every command the same way
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "config: http.port: HTTP_SERVER_PORT (the original service's name) and HTTP_PORT are both set "
        "and disagree: HTTP_PORT has '8080', HTTP_SERVER_PORT='9090'; unset one of them"
    ]


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_original_name_counts_as_unset(empty: str) -> None:
    assert load_settings(None, {"HTTP_SERVER_PORT": empty, "HTTP_PORT": "8082"}).http.port == 8082
    assert load_settings(None, {"CONSUMER_TOPIC": empty}).kafka.topic == "orders"
    assert load_settings(None, {"POSTGRES_HOST": empty}) == Settings()


def test_a_bad_value_is_reported_under_the_name_that_was_set() -> None:
    with pytest.raises(
        ConfigError, match=r"^http\.port: must be an integer, got 'abc' \(env HTTP_SERVER_PORT\)$"
    ):
        load_settings(None, {"HTTP_SERVER_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"between 1 and 65535 \(got 70000\) \(env HTTP_SERVER_PORT\)"):
        load_settings(None, {"HTTP_SERVER_PORT": "70000"})


def test_postgres_parts_build_the_dsn_when_no_dsn_is_given() -> None:
    environ = dict(zip(DSN_PARTS, ["db", "5433", "postgres", "password", "orders_db"], strict=True))
    dsn = conninfo_to_dict(load_settings(None, environ).postgres.dsn)
    assert dsn == {
        "host": "db",
        "port": "5433",
        "user": "postgres",
        "password": "password",
        "dbname": "orders_db",
    }


def test_postgres_parts_replace_only_their_part_of_the_file_dsn(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('postgres:\n  dsn: "postgresql://u:p@filehost:5432/filedb?sslmode=require"\n', "utf-8")
    dsn = conninfo_to_dict(load_settings(path, {"POSTGRES_HOST": "envhost"}).postgres.dsn)
    assert (dsn["host"], dsn["dbname"], dsn["user"], dsn["sslmode"]) == ("envhost", "filedb", "u", "require")


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "5432x"])
def test_a_bad_postgres_port_names_the_variable(port: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^postgres\.dsn: POSTGRES_PORT must be a port number.*\(env POSTGRES_PORT\)$"
    ):
        load_settings(None, {"POSTGRES_PORT": port})


def test_postgres_parts_that_agree_with_the_dsn_are_fine() -> None:
    # Our .env.example sets both (POSTGRES_DSN for `make run`, the parts for the compose database).
    environ = {
        "POSTGRES_DSN": "postgresql://orders:orders@127.0.0.1:5432/orders",
        "POSTGRES_USER": "orders",
        "POSTGRES_PASSWORD": "orders",
        "POSTGRES_DB": "orders",
        "POSTGRES_PORT": "5432",
        "POSTGRES_HOST": "127.0.0.1",
    }
    assert load_settings(None, environ).postgres.dsn == environ["POSTGRES_DSN"]


def test_postgres_parts_disagreeing_with_the_dsn_fail_without_echoing_a_password() -> None:
    dsn = "postgresql://orders:s3cret@127.0.0.1:5432/orders"
    with pytest.raises(ConfigError, match=r"POSTGRES_HOST .* and POSTGRES_DSN .*host '127\.0\.0\.1'"):
        load_settings(None, {"POSTGRES_DSN": dsn, "POSTGRES_HOST": "db"})
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"POSTGRES_DSN": dsn, "POSTGRES_PASSWORD": "hunter2"})
    assert "POSTGRES_PASSWORD" in str(caught.value)
    assert "POSTGRES_DSN" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def original_keys(text: str) -> list[str]:
    keys, section = [], ""
    for line in text.splitlines():
        if not line.startswith(" "):
            section = line.rstrip(":")
        else:
            keys.append(f"{section}.{line.strip().split(':')[0]}")
    return keys


def test_an_original_config_gets_a_hint_for_each_key_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ORIGINAL_CONFIG, encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(path), "check-config"])
    assert stop.value.code == 2  # a bad setting ends every command the same way
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"config: cache.capacity: unknown key ({path})"
    hinted = [re.match(r"config: hint: (\S+) is the original service's; ", line) for line in lines[1:]]
    assert all(hinted), lines
    # kafka.topic and kafka.auto_offset_reset mean here what they meant there: read, not hinted.
    read_here = {"kafka.topic", "kafka.auto_offset_reset"}
    assert [m.group(1) for m in hinted if m] == sorted(set(original_keys(ORIGINAL_CONFIG)) - read_here)
    ours = {
        f"{s}.{k}"
        for s in ("http", "postgres", "kafka", "consumer", "cache")
        for k in dir(getattr(Settings(), s))
    }
    for line in lines[1:]:
        named = re.search(r"here it is (\S+)", line)
        if named:
            assert named.group(1) in ours, line  # a hint names a key that exists


def test_every_hint_names_a_real_setting() -> None:
    settings = Settings()
    for key, (ours, _note) in ORIGINAL_KEYS.items():
        assert key.split(".")[0] in {"http_server", "database", "kafka", "health", "consumer", "cache"}
        if ours is not None:
            section, name = ours.split(".")
            assert hasattr(getattr(settings, section), name), key


def test_a_plain_typo_gets_no_hint(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("http:\n  prot: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert (caught.value.key, caught.value.hints) == ("http.prot", ())
    assert hint_for("http.prot") is None


def test_readme_and_example_name_every_alias() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / "config.yaml.example").read_text(encoding="utf-8")
    for alias in ENV_ALIASES:
        assert re.search(rf"`{alias.original}`\s*\|\s*`{alias.ours}`", readme), alias
        assert f"env {alias.ours}, or the original's {alias.original}" in example
    for name in DSN_PARTS:
        assert f"`{name}`" in readme
