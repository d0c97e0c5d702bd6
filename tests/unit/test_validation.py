"""decode_order, rule by rule: each test breaks one rule on the otherwise valid canonical order and checks
that exactly that path is reported; then the decode errors, the cross-field rules, and the two derived
forms (order_to_json_bytes, content_hash) that the store and the cache rely on."""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import re
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from internal.domain.errors import InvalidOrder, UndecodableMessage, Violation
from internal.domain.order import (
    INSTANT_MESSAGE,
    OFFSET_MESSAGE,
    Order,
    content_hash,
    hash_form,
    order_to_json_bytes,
)
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy, decode_order

# The canonical order (tests/fixtures/order-canonical.json) as a dict, so rules can be broken one by one;
# test_canonical_copy_matches_the_fixture_file keeps the two equal.
CANONICAL: Final[dict[str, Any]] = {
    "order_uid": "b563feb7b2b84b6test",
    "track_number": "WBILMTESTTRACK",
    "entry": "WBIL",
    "delivery": {
        "name": "Test Testov",
        "phone": "+9720000000",
        "zip": "2639809",
        "city": "Kiryat Mozkin",
        "address": "Ploshad Mira 15",
        "region": "Kraiot",
        "email": "test@gmail.com",
    },
    "payment": {
        "transaction": "b563feb7b2b84b6test",
        "request_id": "",
        "currency": "USD",
        "provider": "wbpay",
        "amount": 1817,
        "payment_dt": 1637907727,
        "bank": "alpha",
        "delivery_cost": 1500,
        "goods_total": 317,
        "custom_fee": 0,
    },
    "items": [
        {
            "chrt_id": 9934930,
            "track_number": "WBILMTESTTRACK",
            "price": 453,
            "rid": "ab4219087a764ae0btest",
            "name": "Mascaras",
            "sale": 30,
            "size": "0",
            "total_price": 317,
            "nm_id": 2389212,
            "brand": "Vivienne Sabo",
            "status": 202,
        }
    ],
    "locale": "en",
    "internal_signature": "",
    "customer_id": "test",
    "delivery_service": "meest",
    "shardkey": "9",
    "sm_id": 99,
    "date_created": "2021-11-26T06:22:19Z",
    "oof_shard": "1",
}
# tests/fixtures/order-canonical.json is the project's copy of ../shared/fixtures/order-canonical.json.
CANONICAL_FIXTURE: Final = Path(__file__).resolve().parents[1] / "fixtures" / "order-canonical.json"

NOW: Final = datetime(2021, 11, 26, 7, 0, 0, tzinfo=UTC)  # half an hour after the canonical date_created
POLICY: Final = ValidationPolicy()
FIELDS_ONLY: Final = ValidationPolicy(cross_field_checks=False, plausibility_checks=False)

STRING_FIELDS: Final = [
    "order_uid", "track_number", "entry", "delivery.name", "delivery.phone", "delivery.zip", "delivery.city",
    "delivery.address", "delivery.region", "delivery.email", "payment.transaction", "payment.request_id",
    "payment.currency", "payment.provider", "payment.bank", "items[0].track_number", "items[0].rid",
    "items[0].name", "items[0].size", "items[0].brand", "locale", "internal_signature", "customer_id",
    "delivery_service", "shardkey", "oof_shard",
]  # fmt: skip
INT_FIELDS: Final = [
    "payment.amount", "payment.payment_dt", "payment.delivery_cost", "payment.goods_total",
    "payment.custom_fee", "items[0].chrt_id", "items[0].price", "items[0].sale", "items[0].total_price",
    "items[0].nm_id", "items[0].status", "sm_id",
]  # fmt: skip


def _steps(path: str) -> list[str | int]:
    return [int(step[1:-1]) if step[0] == "[" else step for step in re.findall(r"\[\d+\]|[^.\[]+", path)]


def _all_paths(node: Any, prefix: str = "") -> list[str]:
    """Every key of the document at every level, as the paths decode_order reports."""
    paths: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            paths += [path, *_all_paths(value, path)]
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _all_paths(value, f"{prefix}[{index}]")
    return paths


def canonical() -> dict[str, Any]:
    return copy.deepcopy(CANONICAL)


def _parent_and_key(doc: dict[str, Any], path: str) -> tuple[Any, str | int]:
    *parents, last = _steps(path)
    node: Any = doc
    for step in parents:
        node = node[step]
    return node, last


def with_value(path: str, value: object) -> dict[str, Any]:
    doc = canonical()
    parent, key = _parent_and_key(doc, path)
    parent[key] = value
    return doc


def without(path: str) -> dict[str, Any]:
    doc = canonical()
    parent, key = _parent_and_key(doc, path)
    del parent[key]
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def decode(doc: object, policy: ValidationPolicy = POLICY) -> Order:
    return decode_order(encode(doc), policy, NOW)


def violations(doc: object, policy: ValidationPolicy = POLICY) -> list[Violation]:
    with pytest.raises(InvalidOrder) as caught:
        decode(doc, policy)
    return list(caught.value.violations)


def paths(doc: object, policy: ValidationPolicy = POLICY) -> list[str]:
    return [violation.path for violation in violations(doc, policy)]


def reported(doc: object) -> list[tuple[str, str]]:
    return [(violation.path, violation.message) for violation in violations(doc)]


def test_canonical_order_passes() -> None:
    order = decode(CANONICAL)
    assert order.order_uid == "b563feb7b2b84b6test"
    assert order.items[0].total_price == 317
    assert order.date_created == "2021-11-26T06:22:19Z"  # the text as sent
    assert order.created_at == datetime(2021, 11, 26, 6, 22, 19, tzinfo=UTC)
    assert order.created_at.utcoffset() == timedelta(0)


def test_canonical_copy_matches_the_fixture_file() -> None:
    assert json.loads(CANONICAL_FIXTURE.read_bytes()) == CANONICAL


def test_the_field_lists_cover_every_leaf() -> None:
    leaves = {path for path in _all_paths(CANONICAL) if path not in ("delivery", "payment", "items")}
    assert leaves == set(STRING_FIELDS) | set(INT_FIELDS) | {"date_created"}


# --- structure: missing, null, unknown, wrong JSON type -------------------------------------------------


@pytest.mark.parametrize("path", _all_paths(CANONICAL))
def test_missing_field_is_reported_at_its_path(path: str) -> None:
    assert reported(without(path)) == [(path, "missing field")]


@pytest.mark.parametrize("path", _all_paths(CANONICAL))
def test_null_is_rejected_at_its_path(path: str) -> None:
    assert paths(with_value(path, None)) == [path]


@pytest.mark.parametrize("parent", ["", "delivery", "payment", "items[0]"])
def test_unknown_field_is_rejected_at_every_level(parent: str) -> None:
    path = f"{parent}.extra" if parent else "extra"
    assert reported(with_value(path, 1)) == [(path, "unknown field")]


def test_unknown_key_that_is_not_a_plain_name_is_quoted_and_shortened() -> None:
    assert paths(with_value("delivery.x y", 1)) == ['delivery["x y"]']
    (long_key_path,) = paths(with_value("k" * 500, 1))
    assert long_key_path == '$["' + "k" * 64 + '..."]'


@pytest.mark.parametrize("path", STRING_FIELDS)
@pytest.mark.parametrize(("value", "got"), [(12, "number"), (True, "boolean"), ([], "array"), ({}, "object")])
def test_string_field_rejects_other_json_types(path: str, value: object, got: str) -> None:
    assert reported(with_value(path, value)) == [(path, f"must be a string, got {got}")]


FRACTION: Final = "a number with a fraction or exponent"


@pytest.mark.parametrize("path", INT_FIELDS)
@pytest.mark.parametrize(
    ("value", "got"),
    [("12", "string"), (12.0, FRACTION), (12.5, FRACTION), (True, "boolean"), ([12], "array")],
)  # fmt: skip
def test_integer_field_rejects_other_json_types(path: str, value: object, got: str) -> None:
    assert reported(with_value(path, value)) == [(path, f"must be an integer, got {got}")]


def test_integer_in_exponent_notation_is_rejected() -> None:
    raw = encode(CANONICAL).replace(b'"sm_id": 99', b'"sm_id": 9.9e1')
    with pytest.raises(InvalidOrder) as caught:
        decode_order(raw, POLICY, NOW)
    assert [v.path for v in caught.value.violations] == ["sm_id"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("delivery", [], "must be an object, got array"),
        ("delivery", "x", "must be an object, got string"),
        ("payment", 1, "must be an object, got number"),
        ("items", {}, "must be an array, got object"),
        ("items", "x", "must be an array, got string"),
        ("items[0]", 1, "must be an object, got number"),
        ("items[0]", [], "must be an object, got array"),
    ],
)
def test_nested_object_and_array_types(path: str, value: object, message: str) -> None:
    assert reported(with_value(path, value)) == [(path, message)]


@pytest.mark.parametrize("document", [[], [CANONICAL], "order", 1, True, None])
def test_root_that_is_not_an_object_is_invalid_at_root(document: object) -> None:
    assert paths(document) == ["$"]


# --- per-field rules: each bad value breaks exactly one rule --------------------------------------------

IDENTIFIER_FIELDS: Final = ["order_uid", "track_number", "payment.transaction", "items[0].rid"]
TEXT_FIELDS: Final = [
    "entry", "delivery.name", "delivery.city", "delivery.region", "payment.provider", "payment.bank",
    "items[0].track_number", "items[0].name", "items[0].size", "items[0].brand", "customer_id",
    "delivery_service",
]  # fmt: skip
MAY_BE_EMPTY_FIELDS: Final = ["internal_signature", "payment.request_id"]
DIGIT_FIELDS: Final = ["delivery.zip", "shardkey", "oof_shard"]
POSITIVE_FIELDS: Final = [
    "sm_id", "items[0].chrt_id", "items[0].nm_id", "payment.goods_total", "payment.payment_dt",
]  # fmt: skip
NON_NEGATIVE_FIELDS: Final = [
    "payment.amount", "items[0].price", "payment.delivery_cost", "payment.custom_fee", "items[0].total_price",
]  # fmt: skip
CONTROL_CHARACTERS: Final = ["a\u0000b", "\u0000", "a\nb", "tab\there", "\u001f", "\r"]

# (path, a value that breaks one rule of that field)
BROKEN: Final[list[tuple[str, object]]] = [
    *[(path, value) for path in IDENTIFIER_FIELDS for value in
      ["", "a" * 65, "abc-123", "abc 123", "abc_123", "caf\u00e9", "\u0661\u0662", "abc\u0000"]],
    *[(path, value) for path in TEXT_FIELDS for value in ["", "x" * 256, *CONTROL_CHARACTERS]],
    *[("delivery.address", value) for value in ["", "x" * 513, *CONTROL_CHARACTERS]],
    *[(path, value) for path in MAY_BE_EMPTY_FIELDS for value in ["x" * 256, *CONTROL_CHARACTERS]],
    *[("delivery.phone", value) for value in
      ["", "9720000000", "+0720000000", "+1234567", "+1234567890123456", "+972 000 0000", "+972-000-0000",
       "+97200000a0", "+\u0669\u0667\u0662\u0660\u0660\u0660\u0660\u0660\u0660\u0660", "+9720000000\n"]],
    *[("delivery.email", value) for value in
      ["", "test", "test@", "@gmail.com", "test@gmail", "te st@gmail.com", "test@gmail.c", "test@@gmail.com",
       "test@-gmail.com", "t\u00e9st@gmail.com", "a" * 245 + "@gmail.com"]],
    *[(path, value) for path in DIGIT_FIELDS for value in
      ["", "12a", "-1", "1.5", " 1", "1" * 17, "\u0661\u0662"]],
    *[("locale", value) for value in
      ["", "e", "english", "en_US", "en-", "-en", "en-USA1", "12", "en US", "en" + "-abcde" * 6]],
    *[("payment.currency", value) for value in
      ["", "usd", "Usd", "US", "USDD", "XYZ", "XXX", "XTS", "XAU", "HRK", " USD"]],
    *[(path, value) for path in POSITIVE_FIELDS for value in [0, -1, 2**63]],
    *[(path, value) for path in NON_NEGATIVE_FIELDS for value in [-1, -(2**63), 2**63]],
    *[("items[0].sale", value) for value in [-1, 101]],
    *[("items[0].status", value) for value in [-1, 2**31]],
    *[("items", value) for value in [[], [CANONICAL["items"][0]] * 1001]],
    *[("date_created", value) for value in
      ["", "2021-11-26 06:22:19Z", "2021-11-26T06:22:19", "2021-11-26", "2021-11-26T06:22Z",
       "2021-11-26T06:22:19+0300", "2021-11-26T06:22:19+03", "2021-11-26T06:22:19 Z", "2021-11-26T06:22:19.Z",
       "2021-13-26T06:22:19Z", "2021-11-31T06:22:19Z", "2021-11-26T25:00:00Z", "20211126T062219Z",
       "Fri, 26 Nov 2021 06:22:19 GMT", "1637907727", 1637907727, 1637907727.5]],
]  # fmt: skip

# (path, a value right at a limit that must pass); checked with the cross-field rules off.
ACCEPTED: Final[list[tuple[str, object]]] = [
    *[(path, value) for path in IDENTIFIER_FIELDS for value in ["a", "Z" * 64, "ABCxyz0123"]],
    *[(path, value) for path in TEXT_FIELDS for value in
      ["x", "x" * 255, "Тест Тестов", "\u00e9\U0001f600 \u007f"]],
    *[("delivery.address", value) for value in ["x", "x" * 512]],
    *[(path, value) for path in MAY_BE_EMPTY_FIELDS for value in ["", "x" * 255]],
    *[("delivery.phone", value) for value in ["+12345678", "+123456789012345", "+9720000000"]],
    *[("delivery.email", value) for value in
      ["a.b+c@mail.example.co.uk", "x@y.io", "O'Brien@example.com", "a" * 244 + "@gmail.com"]],
    *[(path, value) for path in DIGIT_FIELDS for value in ["0", "1" * 16, "007"]],
    *[("locale", value) for value in
      ["en", "ru", "EN", "en-US", "zh-Hant-TW", "zh-Hant", "es-419", "sl-rozaj", "de-CH-1901", "yue-HK"]],
    *[("payment.currency", value) for value in ["EUR", "RUB", "JPY", "XOF", "ZWG", "XCG"]],
    *[(path, value) for path in POSITIVE_FIELDS for value in [1, 2**63 - 1]],
    *[(path, value) for path in NON_NEGATIVE_FIELDS for value in [0, 2**63 - 1]],
    *[("items[0].sale", value) for value in [0, 100]],
    *[("items[0].status", value) for value in [0, 2**31 - 1]],
    *[("date_created", value) for value in
      ["2021-11-26T09:22:19+03:00", "2021-11-25T22:22:19-08:00", "2021-11-26T06:22:19.5Z",
       "2021-11-26T06:22:19.123456789Z", "2021-11-26t06:22:19z", "2021-11-26T06:22:19-00:00"]],
]  # fmt: skip


@pytest.mark.parametrize(("path", "value"), BROKEN)
def test_each_broken_rule_is_reported_at_exactly_its_path(path: str, value: object) -> None:
    assert paths(with_value(path, value)) == [path]


@pytest.mark.parametrize(("path", "value"), ACCEPTED)
def test_values_at_the_limits_are_accepted(path: str, value: object) -> None:
    decode(with_value(path, value), FIELDS_ONLY)


def test_a_thousand_items_are_accepted() -> None:
    doc = canonical()
    doc["items"] = [{**CANONICAL["items"][0], "rid": f"rid{index}"} for index in range(1000)]
    doc["payment"]["goods_total"] = 317 * 1000
    doc["payment"]["amount"] = 317 * 1000 + 1500
    assert len(decode(doc).items) == 1000


RFC3339: Final = "must be an RFC 3339 date-time with a zone, like 2021-11-26T06:22:19Z"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("sm_id", "12", "must be an integer, got string"),
        ("delivery.phone", "12345", "must be E.164 like +9720000000"),
        ("delivery.email", "test@gmail", "must be an e-mail address like name@example.com"),
        ("delivery.zip", "12a", "must be 1 to 16 digits"),
        ("locale", "en_US", "must be a BCP 47 language tag like en, ru or en-US"),
        ("payment.currency", "usd", "must be an active ISO 4217 currency code like USD"),
        ("order_uid", "a-b", "must be ASCII letters and digits only"),
        ("entry", "", "must not be empty"),
        ("entry", "a\u0000", "must not contain NUL or other control characters (U+0000..U+001F)"),
        ("delivery.address", "x" * 513, "must be at most 512 characters"),
        ("sm_id", 0, "must be greater than 0"),
        ("items[0].price", -1, "must be at least 0"),
        ("items[0].sale", 101, "must be at most 100"),
        ("items", [], "must not be empty"),
        ("items", [{}] * 1001, "must have at most 1000 entries, got 1001"),
        ("date_created", "2021-11-26 06:22:19Z", RFC3339),
        ("date_created", "2021-11-26T06:22:19", RFC3339),
        ("date_created", 1637907727, "must be an RFC 3339 date-time string, got number"),
        ("date_created", "2021-13-26T06:22:19Z",
         "must be a valid RFC 3339 date-time (month must be in 1..12)"),
        ("date_created", "2021-11-26T23:59:60Z",
         "must be a valid RFC 3339 date-time (second must be in 0..59)"),
        ("date_created", "2021-11-26T06:22:19+14:01", OFFSET_MESSAGE),
        ("date_created", "0001-01-01T00:00:00+00:01", INSTANT_MESSAGE),
    ],
)  # fmt: skip
def test_messages_are_short_and_human(path: str, value: object, message: str) -> None:
    assert reported(with_value(path, value)) == [(path, message)]


def test_messages_do_not_echo_the_offending_value() -> None:
    private = "jane.doe.private@"
    (violation,) = violations(with_value("delivery.email", private))
    assert private not in str(violation)


def test_every_violation_of_a_message_is_listed() -> None:
    doc = with_value("sm_id", "99")
    doc["delivery"]["phone"] = "0720000000"
    doc["payment"]["currency"] = "usd"
    doc["items"][0]["price"] = -1
    doc["items"].append({**CANONICAL["items"][0], "rid": "bad rid", "status": None})
    doc["items"].append(7)
    doc["date_created"] = "2021-11-26 06:22:19Z"
    doc["surprise"] = True
    del doc["locale"]
    del doc["payment"]["bank"]
    assert sorted(paths(doc)) == sorted(
        [
            "sm_id", "delivery.phone", "payment.currency", "payment.bank", "items[0].price", "items[1].rid",
            "items[1].status", "items[2]", "date_created", "surprise", "locale",
        ]
    )  # fmt: skip


# --- cross-field rules -----------------------------------------------------------------------------------


def two_items() -> dict[str, Any]:
    """The canonical order with a second, different item, sums adjusted: still valid."""
    doc = canonical()
    doc["items"].append(
        {**CANONICAL["items"][0], "rid": "second1", "price": 100, "sale": 0, "total_price": 100}
    )
    doc["payment"]["goods_total"] = 417
    doc["payment"]["amount"] = 1917
    return doc


def test_two_item_order_is_valid() -> None:
    assert len(decode(two_items()).items) == 2


def test_item_track_number_must_equal_the_order_track_number() -> None:
    doc = two_items()
    doc["items"][1]["track_number"] = "OTHERTRACK"
    assert reported(doc) == [("items[1].track_number", "must equal track_number")]


def test_goods_total_must_be_the_sum_of_item_totals() -> None:
    doc = two_items()
    doc["payment"]["goods_total"] = 418
    doc["payment"]["amount"] = 1918  # keeps the amount rule satisfied, so only goods_total is wrong
    assert reported(doc) == [("payment.goods_total", "must be the sum of items[].total_price = 417, got 418")]


@pytest.mark.parametrize("path", ["payment.amount", "payment.delivery_cost", "payment.custom_fee"])
def test_amount_must_be_goods_plus_delivery_plus_fee(path: str) -> None:
    doc = canonical()
    doc["payment"][path.removeprefix("payment.")] += 1
    assert paths(doc) == ["payment.amount"]


def test_date_created_may_be_ahead_of_the_clock_by_the_skew_at_most() -> None:
    skew = timedelta(seconds=POLICY.max_future_skew_seconds)
    assert decode(with_value("date_created", (NOW + skew).isoformat()))
    (violation,) = violations(with_value("date_created", (NOW + skew + timedelta(seconds=1)).isoformat()))
    assert violation == Violation("date_created", "must not be more than 300 s after the time of receipt")


def test_skew_is_configurable() -> None:
    late = with_value("date_created", (NOW + timedelta(seconds=30)).isoformat())
    assert paths(late, ValidationPolicy(max_future_skew_seconds=10)) == ["date_created"]


def test_skew_is_compared_as_an_instant_whatever_the_offset() -> None:
    # 09:22:19+03:00 is 06:22:19Z, long before NOW, even though the local time reads later than NOW.
    assert decode(with_value("date_created", "2021-11-26T09:22:19+03:00"))


def test_duplicate_rid_is_reported_at_the_second_occurrence() -> None:
    doc = two_items()
    doc["items"][1]["rid"] = CANONICAL["items"][0]["rid"]
    assert reported(doc) == [("items[1].rid", "duplicate rid, already used by items[0]")]


def test_every_cross_field_violation_is_listed() -> None:
    doc = two_items()
    doc["items"][1]["track_number"] = "OTHERTRACK"
    doc["items"][1]["rid"] = CANONICAL["items"][0]["rid"]
    doc["payment"]["goods_total"] = 1
    doc["payment"]["amount"] = 5
    doc["date_created"] = "2030-01-01T00:00:00Z"
    assert paths(doc, ValidationPolicy(plausibility_checks=False)) == [
        "items[1].track_number", "items[1].rid", "payment.goods_total", "payment.amount", "date_created",
    ]  # fmt: skip


def test_cross_field_rules_wait_for_valid_fields() -> None:
    doc = two_items()
    doc["payment"]["goods_total"] = 1  # would break the sum rule ...
    doc["sm_id"] = 0  # ... but a field is invalid, so only the field is reported
    assert paths(doc) == ["sm_id"]


def test_cross_field_rules_can_be_switched_off() -> None:
    doc = two_items()
    doc["items"][1]["track_number"] = "OTHERTRACK"
    doc["items"][1]["rid"] = CANONICAL["items"][0]["rid"]
    doc["payment"]["goods_total"] = 1
    doc["payment"]["amount"] = 5
    doc["date_created"] = "2030-01-01T00:00:00Z"
    assert decode(doc, FIELDS_ONLY).payment.amount == 5


def test_naive_clock_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_order(encode(CANONICAL), POLICY, NOW.replace(tzinfo=None))


# --- decoding: what is not one UTF-8 JSON document --------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"\xff" + encode(CANONICAL)[1:],
        encode(CANONICAL).replace(b"Mascaras", b"Masc\xe0ras"),
        b"\xef\xbb\xbf" + encode(CANONICAL),  # a byte-order mark is not JSON
        b"order",
        b"{'order_uid': 'x'}",
        encode(CANONICAL)[:-1],
        encode(CANONICAL)[:100],
        encode(CANONICAL) + b"x",
        encode(CANONICAL) + encode(CANONICAL),
        encode(CANONICAL).replace(b'"Mascaras"', b'"Masc\\ud800ras"'),  # a lone surrogate is no character
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_undecodable_values(raw: bytes | None) -> None:
    with pytest.raises(UndecodableMessage):
        decode_order(raw, POLICY, NOW)


def test_size_limit_is_checked_before_parsing() -> None:
    raw = encode(CANONICAL)
    assert decode_order(raw, ValidationPolicy(max_message_bytes=len(raw)), NOW)
    with pytest.raises(UndecodableMessage, match="more than the limit"):
        decode_order(raw, ValidationPolicy(max_message_bytes=len(raw) - 1), NOW)
    with pytest.raises(UndecodableMessage, match="more than the limit"):
        decode_order(b"\xff" * 11, ValidationPolicy(max_message_bytes=10), NOW)


def test_whitespace_and_key_order_do_not_matter() -> None:
    shuffled = dict(reversed(list(CANONICAL.items())))
    raw = json.dumps(shuffled, indent=4).encode()
    assert decode_order(raw, POLICY, NOW) == decode(CANONICAL)


def test_escaped_unicode_is_decoded() -> None:
    raw = encode(CANONICAL).replace(b"Mascaras", b"Masc\\u00e0ras \\ud83d\\ude00")
    assert decode_order(raw, POLICY, NOW).items[0].name == "Masc\u00e0ras \U0001f600"


@pytest.mark.parametrize(("max_bytes", "skew"), [(0, 300), (-1, 300), (1024, -1)])
def test_policy_refuses_nonsense(max_bytes: int, skew: int) -> None:
    with pytest.raises(ValueError, match="must"):
        ValidationPolicy(max_message_bytes=max_bytes, max_future_skew_seconds=skew)


# --- the derived forms: JSON for the API and cache, hash for idempotency ----------------------------------


def test_json_bytes_are_the_message_compact_in_its_key_order() -> None:
    expected = json.dumps(CANONICAL, separators=(",", ":"), ensure_ascii=False).encode()
    assert order_to_json_bytes(decode(CANONICAL)) == expected


@pytest.mark.parametrize(
    "sent",
    [
        "2021-11-26T06:22:19Z",
        "2021-11-26t06:22:19z",
        "2021-11-26T09:22:19+03:00",
        "2021-11-26T06:22:19.5Z",
        "2021-11-26T06:22:19.123456789Z",
        "2021-11-26T06:22:19-00:00",
    ],
)
def test_json_bytes_keep_date_created_as_sent(sent: str) -> None:
    assert json.loads(order_to_json_bytes(decode(with_value("date_created", sent))))["date_created"] == sent


@pytest.mark.parametrize(
    "doc", [CANONICAL, two_items(), with_value("date_created", "2021-11-26T09:22:19.25+03:00")]
)
def test_json_bytes_round_trip_to_an_equal_order(doc: dict[str, Any]) -> None:
    order = decode(doc)
    assert decode_order(order_to_json_bytes(order), POLICY, NOW) == order


def test_content_hash_is_sha256_of_the_compact_message_form() -> None:
    # Pinned on purpose: stored hashes must stay comparable across releases.
    canonical_form = json.dumps(CANONICAL, separators=(",", ":"), ensure_ascii=False)
    assert content_hash(decode(CANONICAL)) == hashlib.sha256(canonical_form.encode()).digest()


def test_content_hash_ignores_whitespace_and_key_order() -> None:
    shuffled = {key: CANONICAL[key] for key in sorted(CANONICAL, reverse=True)}
    shuffled["payment"] = dict(reversed(list(CANONICAL["payment"].items())))
    raw = json.dumps(shuffled, indent=2).encode()
    assert content_hash(decode_order(raw, POLICY, NOW)) == content_hash(decode(CANONICAL))


@pytest.mark.parametrize(
    "spelling",
    ["2021-11-26T09:22:19+03:00", "2021-11-26t06:22:19z", "2021-11-26T06:22:19.000000000Z",
     "2021-11-25T20:52:19-09:30", "2021-11-26T06:22:19-00:00", "2021-11-26T06:22:19.0000009Z"],
)  # fmt: skip
def test_content_hash_compares_date_created_as_an_instant(spelling: str) -> None:
    # The same instant spelt otherwise is the same content (a re-delivery, not a conflict), and the
    # hash is the one stored before date_created was kept as sent (pinned above).
    assert content_hash(decode(with_value("date_created", spelling))) == content_hash(decode(CANONICAL))


def test_content_hash_form_has_microseconds_in_utc() -> None:
    order = decode(with_value("date_created", "2021-11-26T09:22:19.5+03:00"))
    form = hash_form(order, order_to_json_bytes(order))
    assert b'"date_created":"2021-11-26T06:22:19.500000Z"' in form
    assert content_hash(order) == hashlib.sha256(form).digest() == OrderRecord.of(order).content_hash


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("order_uid", "b563feb7b2b84b6tesT"),
        ("delivery.name", "Test Testov "),
        ("payment.request_id", "x"),
        ("payment.payment_dt", 1637907728),
        ("items[0].status", 203),
        ("items[0].brand", "Vivienne Sab\u00f3"),
        ("internal_signature", " "),
        ("date_created", "2021-11-26T06:22:19.000001Z"),
        ("date_created", "2021-11-26T06:22:20Z"),
    ],
)
def test_content_hash_changes_with_any_value(path: str, value: object) -> None:
    assert content_hash(decode(with_value(path, value), FIELDS_ONLY)) != content_hash(decode(CANONICAL))


def test_content_hash_depends_on_item_order() -> None:
    doc = two_items()
    swapped = copy.deepcopy(doc)
    swapped["items"].reverse()
    assert content_hash(decode(swapped)) != content_hash(decode(doc))


def test_a_record_keeps_no_validated_model_alive() -> None:
    """Records of a batch in flight live through the collector's young collections; a record holding
    its pydantic model kept a dozen tracked objects per order alive there (docs/performance.md,
    issue 25). The record keeps the uid and bytes; the model is freed as soon as it is dropped."""
    order = decode(CANONICAL)
    record = OrderRecord.of(order)
    gone = weakref.ref(order)
    del order
    assert gone() is None
    assert (record.uid, record.json) == (decode(CANONICAL).order_uid, order_to_json_bytes(decode(CANONICAL)))
    assert not any(gc.is_tracked(part) for part in record)  # nothing in it for the collector to walk
