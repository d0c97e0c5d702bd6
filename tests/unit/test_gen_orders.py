"""Tests of the mock-order generator: its file format, determinism, CLI errors and the orders themselves."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import gen_orders
from internal.domain.errors import InvalidOrder
from internal.domain.validation import ValidationPolicy, decode_order

CANONICAL_KEYS = [
    "order_uid", "track_number", "entry", "delivery", "payment", "items", "locale", "internal_signature",
    "customer_id", "delivery_service", "shardkey", "sm_id", "date_created", "oof_shard",
]  # fmt: skip
DELIVERY_KEYS = ["name", "phone", "zip", "city", "address", "region", "email"]
PAYMENT_KEYS = [
    "transaction", "request_id", "currency", "provider", "amount", "payment_dt", "bank", "delivery_cost",
    "goods_total", "custom_fee",
]  # fmt: skip
ITEM_KEYS = [
    "chrt_id", "track_number", "price", "rid", "name", "sale", "size", "total_price", "nm_id", "brand",
    "status",
]  # fmt: skip
INT_PAYMENT_KEYS = ["amount", "payment_dt", "delivery_cost", "goods_total", "custom_fee"]
INT_ITEM_KEYS = ["chrt_id", "price", "sale", "total_price", "nm_id", "status"]
ALNUM = re.compile(r"[A-Za-z0-9]{1,64}")
FREE_TEXT = (
    r"(entry|customer_id|delivery_service|delivery\.(name|city|address|region)|payment\.(provider|bank))"
)
# Where the validator must report each defect kind: one violation, at a path matching this pattern.
DEFECT_PATHS = {
    "bad_uid_charset": r"order_uid",
    "empty_required_field": FREE_TEXT,
    "bad_phone": r"delivery\.phone",
    "bad_email": r"delivery\.email",
    "bad_zip": r"delivery\.zip",
    "bad_currency": r"payment\.currency",
    "negative_amount": r"payment\.(delivery_cost|custom_fee)",
    "wrong_type": r"sm_id|payment\.payment_dt|delivery\.zip",
    "unknown_field": r"(delivery\.|payment\.|items\[0\]\.)?(extra_field|comment|debug)",
    "missing_field": rf"{FREE_TEXT}|locale|sm_id|shardkey",
    "sum_mismatch": r"payment\.goods_total",
    "amount_mismatch": r"payment\.amount",
    "track_mismatch": r"items\[\d+\]\.track_number",
    "future_date": r"date_created",
    "empty_items": r"items",
    "duplicate_rid": r"items\[1\]\.rid",
    "sale_out_of_range": r"items\[0\]\.sale",
    "bad_locale": r"locale",
    "too_long_field": FREE_TEXT,
    "control_char": FREE_TEXT,
    "bad_date_format": r"date_created",
}


def run(tmp_path: Path, *args: str, name: str = "mock.json") -> Path:
    """Run the CLI into ``tmp_path`` and return the written file."""
    output = tmp_path / name
    assert gen_orders.main([*args, "-o", str(output)]) == 0
    return output


def valid_orders(n: int = 300, min_items: int = 1, max_items: int = 5, seed: int = 7) -> list[dict[str, Any]]:
    return [order for order, defect in gen_orders.generate(n, min_items, max_items, 0.0, seed) if not defect]


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = run(tmp_path, "-n", "200", "--invalid-rate", "0.3", "--seed", "42", name="a.json")
    second = run(tmp_path, "-n", "200", "--invalid-rate", "0.3", "--seed", "42", name="b.json")
    other = run(tmp_path, "-n", "200", "--invalid-rate", "0.3", "--seed", "43", name="c.json")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_file_is_one_json_array_and_one_order_per_line(tmp_path: Path) -> None:
    output = run(tmp_path, "-n", "50", "--invalid-rate", "0.2", "--seed", "1")
    text = output.read_text(encoding="utf-8")
    assert len(json.loads(text)) == 50
    lines = text.split("\n")
    assert lines[0] == "["
    assert lines[-2:] == ["]", ""]
    middle = lines[1:-2]
    assert len(middle) == 50
    assert all(line.endswith(",") for line in middle[:-1])
    assert not middle[-1].endswith(",")
    for line in middle:
        assert isinstance(json.loads(line.removesuffix(",")), dict)


def test_zero_orders_is_an_empty_array(tmp_path: Path) -> None:
    assert run(tmp_path, "-n", "0").read_text(encoding="utf-8") == "[\n]\n"


@pytest.mark.parametrize(("n", "rate"), [(100, 0.0), (100, 0.1), (37, 0.5), (10, 1.0), (3600, 0.1)])
def test_invalid_count_is_exactly_rounded_rate(n: int, rate: float) -> None:
    defects = [defect for _, defect in gen_orders.generate(n, 1, 3, rate, seed=n)]
    assert len(defects) == n
    assert sum(defect is not None for defect in defects) == round(n * rate)


def test_summary_on_stderr_counts_every_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, "-n", "400", "--invalid-rate", "0.25", "--seed", "3")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "total=400 valid=300 invalid=100 seed=3" in captured.err
    kinds = re.findall(r"defect (\w+)=(\d+)", captured.err)
    assert [kind for kind, _ in kinds] == sorted(kind for kind, _ in kinds)
    assert sum(int(count) for _, count in kinds) == 100


def test_progress_reported_for_large_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gen_orders, "PROGRESS_THRESHOLD", 100)
    run(tmp_path, "-n", "100", "--seed", "1")
    err = capsys.readouterr().err
    assert re.findall(r"(\d+)% \(", err) == [str(p) for p in range(10, 101, 10)]


def test_stdout_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_orders.main(["-n", "3", "--seed", "5", "-o", "-"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_failed_run_leaves_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "mock.json"
    output.write_text("old", encoding="utf-8")

    def explode(*_: object) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(gen_orders, "make_valid_order", explode)
    with pytest.raises(RuntimeError):
        gen_orders.main(["-n", "5", "-o", str(output)])
    assert output.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["mock.json"]


def test_unwritable_output_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_orders.main(["-n", "1", "-o", str(tmp_path / "missing" / "mock.json")]) == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "-1"], "must be at least 0"),
        (["-n", "many"], "not an integer"),
        (["--min-items", "3", "--max-items", "2"], "must not exceed"),
        (["--min-items", "0"], "must be within 1..1000"),
        (["--max-items", "1001"], "must be within 1..1000"),
        (["--invalid-rate", "1.5"], "fraction"),
        (["--invalid-rate", "-0.1"], "fraction"),
        (["--invalid-rate", "nan"], "fraction"),
        (["--seed", "x"], "invalid int"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gen_orders.main([*args, "-o", "-"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_generate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bad arguments"):
        next(gen_orders.generate(10, 2, 1))


def test_valid_orders_have_canonical_shape_and_satisfy_rules() -> None:
    orders = valid_orders(min_items=2, max_items=4)
    assert len({order["order_uid"] for order in orders}) == len(orders)
    for order in orders:
        assert list(order) == CANONICAL_KEYS
        assert list(order["delivery"]) == DELIVERY_KEYS
        assert list(order["payment"]) == PAYMENT_KEYS
        items, payment = order["items"], order["payment"]
        assert 2 <= len(items) <= 4
        assert all(list(item) == ITEM_KEYS for item in items)
        assert ALNUM.fullmatch(order["order_uid"])
        assert ALNUM.fullmatch(order["track_number"])
        assert payment["transaction"] == order["order_uid"]
        assert len({item["rid"] for item in items}) == len(items)
        for item in items:
            assert ALNUM.fullmatch(item["rid"])
            assert item["track_number"] == order["track_number"]
            assert 0 <= item["sale"] <= 100
            assert item["total_price"] == item["price"] * (100 - item["sale"]) // 100
        assert payment["goods_total"] == sum(item["total_price"] for item in items) > 0
        assert payment["amount"] == payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]
        assert re.fullmatch(r"\+[1-9]\d{7,14}", order["delivery"]["phone"])
        assert re.fullmatch(r"[\w.]+@example\.com", order["delivery"]["email"])
        assert all(order[key].isdigit() for key in ("shardkey", "oof_shard"))
        assert order["delivery"]["zip"].isdigit()
        created = datetime.strptime(order["date_created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert created < gen_orders.BASE_TIME
        assert abs(payment["payment_dt"] - created.timestamp()) <= 3600


def test_valid_orders_use_json_ints_only() -> None:
    for order in valid_orders(50):
        values = [order["sm_id"], *(order["payment"][key] for key in INT_PAYMENT_KEYS)]
        values += [item[key] for item in order["items"] for key in INT_ITEM_KEYS]
        assert all(type(value) is int for value in values)


def test_every_defect_kind_is_drawn_and_invalid_orders_keep_unique_uids() -> None:
    pairs = list(gen_orders.generate(2000, 1, 3, 0.5, seed=11))
    kinds = Counter(defect for _, defect in pairs if defect)
    assert set(kinds) == set(gen_orders.DEFECT_KINDS)
    assert len({order["order_uid"] for order, _ in pairs}) == len(pairs)


def test_defect_kinds_cover_the_documented_list() -> None:
    required = {
        "bad_uid_charset", "empty_required_field", "bad_phone", "bad_email", "bad_zip", "bad_currency",
        "negative_amount", "wrong_type", "unknown_field", "missing_field", "sum_mismatch", "amount_mismatch",
        "track_mismatch", "future_date", "empty_items", "duplicate_rid", "sale_out_of_range", "bad_locale",
    }  # fmt: skip
    assert required <= set(gen_orders.DEFECT_KINDS)


@pytest.mark.parametrize("kind", gen_orders.DEFECT_KINDS)
def test_each_defect_changes_the_order_and_stays_json(kind: str) -> None:
    for seed in range(20):
        rng = random.Random(seed)
        original = gen_orders.make_valid_order(rng, seed, 1, 3)
        broken = gen_orders.apply_defect(json.loads(json.dumps(original)), kind, rng)
        # Compared as JSON text: 99 == 99.0 == True in Python, but not on the wire.
        assert json.dumps(broken) != json.dumps(original)


def decode(order: dict[str, Any]) -> None:
    """Run the service's real validator on the order as the producer would send it."""
    raw = json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    decode_order(raw, ValidationPolicy(), now=datetime.now(UTC))


@pytest.mark.parametrize(("min_items", "max_items"), [(1, 5), (1, 1), (20, 40), (1000, 1000)])
def test_valid_orders_pass_the_validator(min_items: int, max_items: int) -> None:
    for order in valid_orders(300 if max_items < 100 else 3, min_items, max_items):
        decode(order)


def test_every_defect_kind_has_an_expected_violation_path() -> None:
    assert set(DEFECT_PATHS) == set(gen_orders.DEFECT_KINDS)


@pytest.mark.parametrize("kind", gen_orders.DEFECT_KINDS)
def test_each_defect_breaks_exactly_one_rule_of_the_validator(kind: str) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        order = gen_orders.apply_defect(gen_orders.make_valid_order(rng, seed, 1, 3), kind, rng)
        with pytest.raises(InvalidOrder) as error:
            decode(order)
        assert [re.fullmatch(DEFECT_PATHS[kind], v.path) is not None for v in error.value.violations] == [
            True
        ]


def test_file_verdicts_match_the_invalid_rate(tmp_path: Path) -> None:
    output = run(tmp_path, "-n", "500", "--invalid-rate", "0.2", "--seed", "9")
    rejected = 0
    for order in json.loads(output.read_text(encoding="utf-8")):
        try:
            decode(order)
        except InvalidOrder:
            rejected += 1
    assert rejected == 100
