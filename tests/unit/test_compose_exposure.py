"""docker-compose.yml for the people who deploy it: what it publishes, Grafana's admin, the original's .env.

No Docker engine runs here: the files are parsed, interpolated as compose does (tests/unit/
test_deploy_files.py's ``interpolate``) and the service's own loader judges the containers' settings.
Grafana's entrypoint, a shell script, is run for real with /bin/sh (the image's /run.sh replaced by a
stand-in that prints what Grafana would get).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from internal.config import ConfigError, load_settings
from tests.unit.test_deploy_files import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    PORTS_FILE,
    interpolate,
    load_yaml,
    parse_env_file,
    service_env,
)

# The original service's .env, with the defaults its README gives (its compose hostnames included).
ORIGINAL_ENV = {
    "POSTGRES_USER": "postgres",
    "POSTGRES_PASSWORD": "password",
    "POSTGRES_DB": "orders_db",
    "POSTGRES_PORT": "5433",
    "POSTGRES_HOST": "postgres",
    "HTTP_SERVER_PORT": "8081",
    "KAFKA_BOOTSTRAP_SERVERS": "broker:29092",
    "KAFKA_CONSUMER_GROUP_ID": "orders-consumer-2",
    "CONSUMER_TOPIC": "orders-2",
    "KAFKA_BROKERS": "localhost:9092",
    "KAFKA_CLIENT_ID": "orders-producer",
    "ZOOKEEPER_CLIENT_PORT": "2181",
    "ZOOKEEPER_TICK_TIME": "2000",
    "KAFKA_BROKER_ID": "1",
    "KAFKA_ZOOKEEPER_CONNECT": "zookeeper:2181",
    "PROMETHEUS_PORT": "9090",
    "GRAFANA_PORT": "3000",
}

MADE_UP_PASSWORD = "s3cret-from-env"  # noqa: S105 - what a deployer would put into .env


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return dict(load_yaml(COMPOSE_FILE)["services"])


@pytest.fixture(scope="module")
def published() -> dict[str, dict[str, Any]]:
    return dict(load_yaml(PORTS_FILE)["services"])


def port_mappings(services: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(name, str(port)) for name, service in services.items() for port in service.get("ports", [])]


def test_every_published_port_listens_on_loopback_unless_env_says_otherwise(
    services: dict[str, dict[str, Any]], published: dict[str, dict[str, Any]]
) -> None:
    mappings = port_mappings(services) + port_mappings(published)
    assert {name for name, _ in mappings} == {"app", "prometheus", "grafana", "kafka", "postgres"}
    for name, mapping in mappings:
        assert mapping.startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {mapping}"
        assert interpolate(mapping, {}).startswith("127.0.0.1:"), name
        assert interpolate(mapping, parse_env_file(ENV_EXAMPLE)).startswith("127.0.0.1:"), name
        assert interpolate(mapping, {"BIND_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:"), name  # noqa: S104


def test_the_broker_and_the_database_are_published_only_on_request(
    services: dict[str, dict[str, Any]], published: dict[str, dict[str, Any]]
) -> None:
    assert "ports" not in services["kafka"]
    assert "ports" not in services["postgres"]
    assert set(published) == {"kafka", "postgres"}  # the request file publishes these two, nothing else
    assert all(set(service) == {"ports"} for service in published.values())
    assert interpolate(published["kafka"]["ports"][0], {}) == "127.0.0.1:9092:9094"  # the EXTERNAL listener
    assert interpolate(published["postgres"]["ports"][0], {"POSTGRES_PORT": "5433"}) == "127.0.0.1:5433:5432"
    # How to ask: .env.example holds the COMPOSE_FILE line (commented out, so the default publishes nothing).
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    assert f"# COMPOSE_FILE={COMPOSE_FILE.name}:{PORTS_FILE.name}" in lines
    assert "COMPOSE_FILE" not in parse_env_file(ENV_EXAMPLE)


def test_grafana_has_no_default_admin_password(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    password_from_env = "${GRAFANA_ADMIN_PASSWORD:-}"  # noqa: S105 - a reference to .env, not a password
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == password_from_env
    assert parse_env_file(ENV_EXAMPLE)["GRAFANA_ADMIN_PASSWORD"] == ""  # a copy of .env.example sets none
    assert "admin" not in {str(v).lower() for v in grafana["environment"].values()}


def grafana_start(services: dict[str, dict[str, Any]], tmp_path: Path, password: str) -> dict[str, str]:
    """Run Grafana's compose entrypoint with /bin/sh; return the environment /run.sh would start with."""
    shell, flag, script = services["grafana"]["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    stand_in = tmp_path / "run.sh"
    stand_in.write_text("#!/bin/sh\nexec env\n", encoding="utf-8")
    stand_in.chmod(0o755)
    script = interpolate(script, {})  # `$$` -> `$`, as compose passes it
    assert "exec /run.sh" in script
    environment = interpolate(services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"], {})
    env = {"PATH": "/usr/bin:/bin", "GF_SECURITY_ADMIN_PASSWORD": password or environment}
    result = subprocess.run(
        [shell, flag, script.replace("/run.sh", str(stand_in))],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_grafana_without_a_password_creates_no_admin(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    env = grafana_start(services, tmp_path, password="")
    assert env.get("GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION") == "true"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env  # Grafana would take an empty one as "admin"


def test_grafana_with_a_password_keeps_it(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    env = grafana_start(services, tmp_path, password=MADE_UP_PASSWORD)
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == MADE_UP_PASSWORD
    assert "GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION" not in env


def test_the_original_env_drives_the_stack(services: dict[str, dict[str, Any]]) -> None:
    settings = load_settings(None, service_env(services["app"], ORIGINAL_ENV))
    assert settings.kafka.topic == "orders-2"  # CONSUMER_TOPIC
    assert settings.kafka.group_id == "orders-consumer-2"  # KAFKA_CONSUMER_GROUP_ID
    # Inside the stack the broker and database are this stack's containers, whatever the original's
    # KAFKA_BOOTSTRAP_SERVERS and POSTGRES_HOST named; user, password and database are its values.
    assert settings.kafka.brokers == "kafka:9092"
    dsn = conninfo_to_dict(settings.postgres.dsn)
    assert (dsn["host"], dsn["port"], dsn["user"], dsn["password"], dsn["dbname"]) == (
        "postgres",
        "5432",
        "postgres",
        "password",
        "orders_db",
    )
    assert interpolate(services["app"]["ports"][0], ORIGINAL_ENV) == "127.0.0.1:8081:8080"  # HTTP_SERVER_PORT
    producer = service_env(services["producer"], ORIGINAL_ENV)
    assert producer["KAFKA_TOPIC"] == "orders-2"  # the producer writes where the service reads


def test_our_name_wins_the_port_and_a_disagreeing_topic_stops_the_service(
    services: dict[str, dict[str, Any]],
) -> None:
    both = {**ORIGINAL_ENV, "HTTP_PORT": "8082", "KAFKA_TOPIC": "orders-3"}
    assert interpolate(services["app"]["ports"][0], both) == "127.0.0.1:8082:8080"
    with pytest.raises(ConfigError) as caught:
        load_settings(None, service_env(services["app"], both))
    assert "CONSUMER_TOPIC" in str(caught.value)
    assert "KAFKA_TOPIC" in str(caught.value)
