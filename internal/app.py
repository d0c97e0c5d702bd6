"""The ``l0-service`` command: reads the settings, prepares the stack, and runs the service that
``internal/wiring.py`` builds (the composition: every part from its factories, the ordered start and
stop). ``main`` is the ``l0-service`` console script and ``cmd/service.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import structlog
from confluent_kafka import KafkaException

from internal.config import Settings
from internal.config.cli import add_config_option, settings_for
from internal.config.show import describe, secret_values
from internal.consumer.letters import topic_max_message_bytes
from internal.pkg.exc_text import first_line
from internal.pkg.kafka_topics import TopicSpec, ensure_topics, topic_setting
from internal.pkg.logging import configure_logging, redactor
from internal.store import migrations
from internal.wiring import build, exit_now_if_stuck, real_factories, service_version

log = structlog.get_logger(component="app")
T = TypeVar("T")
STARTUP_RETRY_S = 60.0


def run_service(settings: Settings) -> int:
    """``serve``: prepare, build the service once from the real factories, run it; its exit code."""
    log.info("starting", version=service_version(), http_port=settings.http.port, topic=settings.kafka.topic)
    _prepare(settings)
    service = build(settings, real_factories())
    return exit_now_if_stuck(service.run(), service.threads())


def _prepare(settings: Settings) -> None:
    """Migrations and topics, retried for a while at start (the stack may still be coming up)."""
    if settings.postgres.migrate_on_start:
        applied = _retry_at_start("migrations", lambda: migrations.apply_pending(settings.postgres.dsn))
        log.info("migrations_applied", ids=applied)
    if settings.kafka.create_topics:
        brokers = settings.kafka.brokers
        _retry_at_start("topics", lambda: ensure_topics(brokers, topic_specs(settings), timeout_s=10))
        _check_dlq_topic(settings)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The orders topic and its dead-letter topic, sized so that every full letter fits."""
    k, c = settings.kafka, settings.consumer
    letters = topic_max_message_bytes(c.max_message_bytes, settings.dlq.max_error_bytes)
    return [
        TopicSpec(k.topic, k.topic_partitions),
        TopicSpec(settings.dlq_topic, 1, config=(("max.message.bytes", str(letters)),)),
    ]


def _check_dlq_topic(settings: Settings) -> None:
    """Say so at start when an existing dead-letter topic is too small for full letters: the service
    still runs (a refused letter goes as a stub), but replays of the largest letters will not work."""
    needed = topic_max_message_bytes(settings.consumer.max_message_bytes, settings.dlq.max_error_bytes)
    try:
        value = topic_setting(settings.kafka.brokers, settings.dlq_topic, "max.message.bytes")
    except KafkaException as exc:  # e.g. no permission to describe configs: a check, not a condition
        log.warning("dlq_topic_check_failed", topic=settings.dlq_topic, error=str(exc.args[0]))
        return
    if value is not None and value.isdigit() and int(value) < needed:
        log.warning(
            "dlq_topic_too_small",
            topic=settings.dlq_topic,
            max_message_bytes=int(value),
            needed=needed,
            hint=f"kafka-configs.sh --alter --entity-type topics --entity-name {settings.dlq_topic} "
            f"--add-config max.message.bytes={needed} (docs/runbook.md#dlq-refuses)",
        )


def _retry_at_start(what: str, step: Callable[[], T]) -> T:
    deadline = time.monotonic() + STARTUP_RETRY_S
    while True:
        try:
            return step()
        except (psycopg.OperationalError, KafkaException) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("startup_step_failed", step=what, error=first_line(exc))
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l0-service", description="The L0 order service.")
    add_config_option(parser)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "rollback", "create-topics", "check-config"],
        help="serve (default): run the service; migrate/rollback: apply/undo migrations; "
        "create-topics: create the Kafka topics; check-config: validate and print the settings",
    )
    args = parser.parse_args(argv)
    settings = settings_for(args)
    secrets = secret_values(settings)
    configure_logging(settings.log.level, settings.log.format, secrets)
    try:
        return _command(args.command, settings)
    except (psycopg.OperationalError, KafkaException) as exc:
        print(
            f"l0-service {args.command}: cannot reach a dependency: {redactor(secrets)(first_line(exc))}",
            file=sys.stderr,
        )
        return 1


def _command(command: str, settings: Settings) -> int:
    if command == "serve":
        return run_service(settings)
    if command == "migrate":
        print(
            f"applied: {', '.join(migrations.apply_pending(settings.postgres.dsn)) or 'nothing (up to date)'}"
        )
    elif command == "rollback":
        print(f"rolled back: {', '.join(migrations.rollback(settings.postgres.dsn, count=1)) or 'nothing'}")
    elif command == "create-topics":
        k = settings.kafka
        ensure_topics(k.brokers, topic_specs(settings))
        print(f"topics ready: {k.topic} ({k.topic_partitions} partitions), {settings.dlq_topic}")
    elif command == "check-config":
        print("config ok:", *describe(settings), sep="\n  ")  # secrets masked: it goes into tickets
    return 0
