"""Migrations from sql/ apply on an empty schema, re-apply as a no-op and roll back (real PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from internal.pkg.paths import migrations_dir
from internal.store import migrations

pytestmark = pytest.mark.integration
TABLES = {"orders", "deliveries", "payments", "items"}
ALL = [
    "0001_orders_schema",
    "0002_search_indexes",
    "0003_search_keyset_indexes",
    "0004_date_created_as_sent",
    "0005_dead_letters",
]


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def columns(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def indexes(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
        return dict(rows.fetchall())


def test_apply_on_empty_schema_creates_every_table_and_index(schema_dsn: str) -> None:
    assert tables(schema_dsn) == set()
    applied = migrations.apply_pending(schema_dsn)
    assert applied == ALL
    assert tables(schema_dsn) >= TABLES
    column_types = columns(schema_dsn)
    index = indexes(schema_dsn)
    assert "UNIQUE" in index["orders_order_uid_key"]
    assert '(order_id, "position")' in index["items_pkey"]  # serves look-ups by order id
    # The search's keyset indexes replaced the single-column ones (sql/0003): two to maintain, not four.
    assert "(track_number, id)" in index["orders_track_number_id_idx"]
    assert "(customer_id, id)" in index["orders_customer_id_id_idx"]
    assert not {"orders_track_number_idx", "orders_customer_id_idx"} & set(index)
    assert column_types["payments.payment_dt"] == "bigint"
    assert column_types["items.chrt_id"] == "bigint"
    assert column_types["orders.sm_id"] == "bigint"
    assert column_types["orders.date_created_text"] == "text"


def test_orders_stored_before_0004_keep_the_text_they_were_served_with(
    schema_dsn: str, tmp_path: Path
) -> None:
    """Their offset was not kept: 0004 fills in the UTC form the reader served until then."""
    before = tmp_path / "sql"
    before.mkdir()
    for path in migrations_dir().glob("000[123]_*.sql"):
        shutil.copy(path, before)
    migrations.apply_pending(schema_dsn, before)
    instants = ["2021-11-26 09:22:19+03", "2021-11-26 06:22:19.5+00", "2021-11-26 06:22:19.000001+00"]
    with psycopg.connect(schema_dsn) as conn:
        for n, instant in enumerate(instants):
            conn.execute(
                "INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,"
                " delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash)"
                " VALUES (%s,'t','e','en','','c','d','1',1,%s,'1','\\x00')",
                (f"u{n}", instant),
            )
    assert migrations.apply_pending(schema_dsn) == ["0004_date_created_as_sent", "0005_dead_letters"]
    with psycopg.connect(schema_dsn) as conn:
        texts = conn.execute("SELECT date_created_text FROM orders ORDER BY order_uid").fetchall()
    assert [t for (t,) in texts] == [
        "2021-11-26T06:22:19Z",
        "2021-11-26T06:22:19.500000Z",
        "2021-11-26T06:22:19.000001Z",
    ]


def test_reapply_is_a_no_op(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    assert migrations.apply_pending(schema_dsn) == []
    assert migrations.pending_ids(schema_dsn) == []


def test_rollback_removes_the_tables(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    assert {"dead_letters", "dead_letter_groups"} <= tables(schema_dsn)
    assert migrations.rollback(schema_dsn, count=1) == ["0005_dead_letters"]
    assert not {"dead_letters", "dead_letter_groups"} & tables(schema_dsn)
    assert migrations.rollback(schema_dsn, count=1) == ["0004_date_created_as_sent"]
    assert "orders.date_created_text" not in columns(schema_dsn)
    assert migrations.rollback(schema_dsn, count=1) == ["0003_search_keyset_indexes"]
    assert "(track_number)" in indexes(schema_dsn)["orders_track_number_idx"]
    assert migrations.rollback(schema_dsn, count=1) == ["0002_search_indexes"]
    assert "orders_track_number_idx" not in indexes(schema_dsn)
    assert migrations.rollback(schema_dsn) == ["0001_orders_schema"]
    assert not TABLES & tables(schema_dsn)
    assert migrations.pending_ids(schema_dsn) == ALL
    assert migrations.apply_pending(schema_dsn) == ALL  # and forward again


def test_child_rows_cascade_with_their_order(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    with psycopg.connect(schema_dsn) as conn:
        (order_id,) = conn.execute(
            "INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,"
            " delivery_service, shardkey, sm_id, date_created, date_created_text, oof_shard, content_hash)"
            " VALUES ('u1','t','e','en','','c','d','1',1,now(),'2021-11-26T06:22:19Z','1','\\x00')"
            " RETURNING id"
        ).fetchone() or (None,)
        conn.execute(
            "INSERT INTO deliveries VALUES (%s,'n','+10000000','1','c','a','r','e@x.io')", (order_id,)
        )
        conn.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)


def test_uid_prefix_search_uses_the_unique_index(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    with psycopg.connect(schema_dsn) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table would otherwise be scanned
        plan = "\n".join(
            str(row[0]) for row in conn.execute("EXPLAIN SELECT id FROM orders WHERE order_uid LIKE 'ab%'")
        )
    assert "orders_order_uid_key" in plan, plan
