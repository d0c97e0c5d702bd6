"""The real stack works: a message goes through the broker (and survives a broker restart), and a row
goes into PostgreSQL and comes back."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Message, Producer

from tests.conftest import Topics
from tests.e2e.helpers import stack
from tests.support import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def produce(brokers: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, value=value)
    assert producer.flush(30) == 0, "message was not acknowledged"


def consume_one(brokers: str, topic: str, group: str) -> Message:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:

        def next_message() -> Message | None:
            m = consumer.poll(0.5)
            return m if m is not None and m.error() is None else None

        return wait_until(next_message, timeout_s=60, what=f"a message on {topic}")
    finally:
        consumer.close()


def test_message_round_trip_through_the_broker(kafka_brokers: str, topics: Topics) -> None:
    topic = topics.orders
    value = f"smoke-{uuid.uuid4()}".encode()
    produce(kafka_brokers, topic, value)
    assert consume_one(kafka_brokers, topic, f"smoke-{uuid.uuid4().hex}").value() == value


def test_message_survives_a_broker_restart(kafka_brokers: str, topics: Topics) -> None:
    topic = topics.orders
    value = f"durable-{uuid.uuid4()}".encode()
    produce(kafka_brokers, topic, value)
    stack("kafka.sh", "restart", kafka_brokers)
    assert consume_one(kafka_brokers, topic, f"smoke-{uuid.uuid4().hex}").value() == value


def test_row_round_trip_through_postgres(schema_dsn: str) -> None:
    with psycopg.connect(schema_dsn) as conn:
        conn.execute("CREATE TABLE smoke (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO smoke VALUES (1, %s)", ("written",))
        conn.commit()
    with psycopg.connect(schema_dsn) as conn:
        assert conn.execute("SELECT note FROM smoke WHERE id = 1").fetchone() == ("written",)
