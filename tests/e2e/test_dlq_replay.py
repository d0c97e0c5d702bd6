"""The dead-letter replay's promise, proven on the whole service: replaying after fixing the cause
stores each order exactly once; a second replay finds them stored and sends nothing.

The cause is a trigger that refuses the orders of one customer, added after the service migrated the
test's schema: the writer's batch fails, the consumer isolates the record and dead-letters it as
``db_rejected``. Dropping the trigger is the fix.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from internal.domain.order import Order
from internal.pkg.kafka_offsets import partition_ends
from internal.tools.dlq import main as dlq_main
from tests.conftest import Topics
from tests.e2e.helpers import (
    final_outcomes,
    headers,
    produce,
    read_topic,
    stored_orders,
    table_counts,
    wait_committed_to_end,
)
from tests.orders import order_doc
from tests.service_proc import StartService

pytestmark = pytest.mark.e2e

ORDERS = 30
BLOCKED = "blocked"
ADD_CAUSE = """
CREATE FUNCTION refuse_blocked_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id = 'blocked' THEN
        RAISE EXCEPTION 'customer % is blocked', NEW.customer_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_blocked_customer BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION refuse_blocked_customer();
"""
FIX_CAUSE = "DROP TRIGGER refuse_blocked_customer ON orders"


def _replay(capsys: pytest.CaptureFixture[str], brokers: str, topics: Topics, dsn: str) -> str:
    """The tool pointed at the service's broker, topics and database - the test's schema, where it
    checks which orders are stored."""
    code = dlq_main(
        ["replay", "--brokers", brokers, "--dlq-topic", topics.dlq, "--to-topic", topics.orders,
         "--reason", "db_rejected", "--dsn", dsn]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()[-1]


def test_replay_after_the_fix_stores_each_order_once_and_a_second_replay_sends_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)  # ready: the schema is migrated
    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        conn.execute(ADD_CAUSE)
    docs = [order_doc(i, seed=41) | ({"customer_id": BLOCKED} if i % 5 == 0 else {}) for i in range(ORDERS)]
    expected = {d["order_uid"]: Order.model_validate_json(json.dumps(d)) for d in docs}
    blocked = {d["order_uid"] for d in docs if d["customer_id"] == BLOCKED}
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    produce(path, topics.orders, kafka_brokers)
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, ORDERS, timeout_s=60, services=[service]
    )

    # The cause is in place: the blocked orders are dead-lettered, the others stored.
    letters = read_topic(kafka_brokers, topics.dlq)
    assert {headers(m)["dlq.reason"] for m in letters} == {"db_rejected"}
    assert all("is blocked" in headers(m)["dlq.error"] for m in letters)
    assert {json.loads(m.value() or b"")["order_uid"] for m in letters} == blocked
    assert set(stored_orders(schema_dsn)) == set(expected) - blocked
    # At-least-once: a letter may be repeated; the replay sends each refused message once.
    refused = {(headers(m)["dlq.original.partition"], headers(m)["dlq.original.offset"]) for m in letters}
    assert len(refused) == len(blocked)

    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        conn.execute(FIX_CAUSE)
    first = _replay(capsys, kafka_brokers, topics, schema_dsn)
    assert first.endswith(f"already stored 0, other target 0, sent {len(refused)}, failed 0")
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, ORDERS + len(refused), timeout_s=60, services=[service]
    )
    assert stored_orders(schema_dsn) == expected  # every order, field by field, each once
    after_fix = table_counts(schema_dsn)
    assert after_fix == {
        "orders": ORDERS,
        "deliveries": ORDERS,
        "payments": ORDERS,
        "items": sum(len(o.items) for o in expected.values()),
    }

    # The tool finds every blocked order stored now, with the content of its letter: nothing goes again.
    second = _replay(capsys, kafka_brokers, topics, schema_dsn)
    assert second.endswith(f"already stored {len(refused)}, other target 0, sent 0, failed 0")
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == ORDERS + len(refused)
    assert table_counts(schema_dsn) == after_fix
    assert stored_orders(schema_dsn) == expected
    assert len(read_topic(kafka_brokers, topics.dlq)) == len(letters)  # and nothing new is refused

    assert service.stop() == 0
    assert final_outcomes(service) == Counter({"stored": ORDERS, "db_rejected": len(blocked)})
