"""Input nobody here wrote: repeated keys at any depth, date_created at the edges of what can be kept,
payment_dt at the edges of the plausibility window. Each rule refuses with a path, never mangles."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internal.domain.duplicate_keys import DUPLICATE_KEY, cannot_repeat
from internal.domain.errors import InvalidOrder, Violation
from internal.domain.order import INSTANT_MESSAGE, OFFSET_MESSAGE, RFC3339_MESSAGE, Order
from internal.domain.validation import ValidationPolicy, decode_order
from tests.unit.test_validation import CANONICAL, FIELDS_ONLY, NOW, canonical, encode, with_value

COMPACT = json.dumps(CANONICAL, separators=(",", ":"), ensure_ascii=False)
CREATED = int(datetime(2021, 11, 26, 6, 22, 19, tzinfo=UTC).timestamp())  # the canonical date_created
NO_CLOCK = ValidationPolicy(cross_field_checks=False)  # plausibility on, the future-skew rule off


def refused(raw: str | bytes, policy: ValidationPolicy | None = None) -> list[Violation]:
    data = raw.encode() if isinstance(raw, str) else raw
    with pytest.raises(InvalidOrder) as error:
        decode_order(data, policy or ValidationPolicy(), NOW)
    return list(error.value.violations)


def insert_after(text: str, anchor: str, addition: str) -> str:
    assert text.count(anchor) == 1, anchor
    return text.replace(anchor, anchor + addition)


# --- repeated keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "addition", "path"),
    [
        ('"entry":"WBIL",', '"entry":"X",', "entry"),
        ('"entry":"WBIL",', '"\\u0065ntry":"X",', "entry"),  # the same key once decoded
        ('"entry":"WBIL",', '"entry":"WBIL",', "entry"),  # even with the same value
        ('"zip":"2639809",', '"zip":"1",', "delivery.zip"),
        ('"amount":1817,', '"amount":1,', "payment.amount"),
        ('"rid":"ab4219087a764ae0btest",', '"ri\\u0064":"other",', "items[0].rid"),
        ('"oof_shard":"1"', ',"oof_shard":"1"', "oof_shard"),
        ('"date_created":"2021-11-26T06:22:19Z",', '"date_created":"2021-11-26T09:22:19+03:00",',
         "date_created"),
    ],
)  # fmt: skip
def test_a_repeated_key_at_any_depth_is_invalid_at_its_path(anchor: str, addition: str, path: str) -> None:
    assert refused(insert_after(COMPACT, anchor, addition)) == [Violation(path, DUPLICATE_KEY)]


def test_a_repeated_key_in_the_second_item_is_reported_there() -> None:
    doc = canonical()
    doc["items"] = [doc["items"][0], {**doc["items"][0], "rid": "second"}]
    doc["payment"]["goods_total"], doc["payment"]["amount"] = 634, 2134
    text = json.dumps(doc, separators=(",", ":"))
    text = text.replace('"rid":"second",', '"rid":"second","brand":"x",')
    assert refused(text) == [Violation("items[1].brand", DUPLICATE_KEY)]


def test_repeated_keys_are_listed_with_the_other_violations() -> None:
    text = insert_after(COMPACT, '"sm_id":99,', '"sm_id":"99",')  # the kept value is a string too
    assert refused(text) == [
        Violation("sm_id", DUPLICATE_KEY),
        Violation("sm_id", "must be an integer, got string"),
    ]


def test_repeated_keys_inside_an_unknown_object_are_found_too() -> None:
    text = insert_after(COMPACT, '"oof_shard":"1"', ',"extra":{"a":1,"a":2}')
    assert refused(text) == [Violation("extra.a", DUPLICATE_KEY), Violation("extra", "unknown field")]


def test_escaped_colons_do_not_hide_a_repeated_key_from_the_count() -> None:
    """The count that rules repeats out counts date_created's colons only where they are raw."""
    text = COMPACT.replace("06:22:19Z", "06\\u003a22\\u003a19Z")  # two colons fewer in the text...
    text = insert_after(text, '"entry":"WBIL",', '"entry":"X",')  # ... and two keys more
    text = insert_after(text, '"locale":"en",', '"locale":"en",')
    assert text.count(":") == COMPACT.count(":")
    assert refused(text) == [Violation("entry", DUPLICATE_KEY), Violation("locale", DUPLICATE_KEY)]


@pytest.mark.parametrize(
    "text",
    [
        COMPACT,
        json.dumps(CANONICAL, indent=2),
        json.dumps(CANONICAL, separators=(" , ", " : ")),
        COMPACT.replace("Ploshad Mira 15", "Ploshad Mira: 15"),  # a colon in a value: the exact search
        COMPACT.replace("Ploshad Mira 15", 'Ploshad \\":Mira'),
        COMPACT.replace("06:22:19Z", "06\\u003a22:19Z"),
    ],
)
def test_messages_without_repeats_pass_whatever_their_spelling(text: str) -> None:
    assert decode_order(text.encode(), ValidationPolicy(), NOW).order_uid == CANONICAL["order_uid"]


KEYS = st.sampled_from(["entry", "locale", "sm_id", "zip", "name", "amount", "rid", "brand"])


@settings(max_examples=150, deadline=None)
@given(st.lists(KEYS, max_size=3), st.booleans(), st.booleans())
def test_the_count_never_passes_a_message_with_a_repeat(
    repeat: list[str], escape: bool, spaces: bool
) -> None:
    """Whatever is repeated, escaped or spaced, a message with a repeated key is refused, and one
    the count lets through has none."""
    text = json.dumps(CANONICAL, separators=(", ", " : ") if spaces else (",", ":"))
    if escape:
        text = text.replace("06:22:19Z", "06\\u003a22\\u003a19Z")
    for key in repeat:
        start = text.index(f'"{key}"')
        end = text.index(",", start)
        text = text[:end] + ", " + text[start:end] + text[end:]
    if repeat:
        assert {v.message for v in refused(text)} == {DUPLICATE_KEY}
    else:
        order = decode_order(text.encode(), ValidationPolicy(), NOW)
        assert cannot_repeat(text, order) or escape  # the count decides unless colons are escaped


# --- date_created: what can be kept as sent, what is refused ----------------------------------------------


@pytest.mark.parametrize(
    "sent",
    ["2021-11-26T20:22:19+14:00", "2021-11-25T18:22:19-12:00", "2021-11-26T12:07:19+05:45",
     "2021-11-26T06:22:19-00:00", "2021-11-26t06:22:19z", "2021-11-26T06:22:19.123456789Z",
     *[f"2021-11-26T06:22:19.{'9' * n}Z" for n in range(1, 10)],
     "2020-02-29T06:22:19Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-00:00",
     "9999-12-31T23:59:59.999999999Z", "0001-01-01T12:00:00+12:00", "9999-12-31T11:59:59-12:00"],
)  # fmt: skip
def test_date_created_forms_that_are_kept(sent: str) -> None:
    order = decode_order(encode(with_value("date_created", sent)), FIELDS_ONLY, NOW)
    assert order.date_created == sent


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ("2021-11-26T06:22:19+14:01", OFFSET_MESSAGE),
        ("2021-11-26T06:22:19-12:01", OFFSET_MESSAGE),
        ("2021-11-26T06:22:19+16:00", OFFSET_MESSAGE),  # PostgreSQL's timestamptz would refuse it
        ("2021-11-26T06:22:19+23:59", OFFSET_MESSAGE),
        ("2021-11-26T06:22:19+05:60", OFFSET_MESSAGE),
        ("0001-01-01T00:00:00+01:00", INSTANT_MESSAGE),  # year 0 in UTC
        ("9999-12-31T23:59:59-00:01", INSTANT_MESSAGE),  # year 10000 in UTC
        ("2021-02-29T06:22:19Z", "must be a valid RFC 3339 date-time (day is out of range for month)"),
        ("2021-11-26T24:00:00Z", "must be a valid RFC 3339 date-time (hour must be in 0..23)"),
        ("2016-12-31T23:59:60Z", "must be a valid RFC 3339 date-time (second must be in 0..59)"),
        ("2021-11-26T06:22:19.1234567890Z", RFC3339_MESSAGE),  # ten fraction digits
    ],
)  # fmt: skip
def test_date_created_forms_that_cannot_be_kept_are_refused(sent: str, message: str) -> None:
    assert refused(encode(with_value("date_created", sent)), FIELDS_ONLY) == [
        Violation("date_created", message)
    ]


def test_the_instant_of_date_created_is_truncated_to_microseconds() -> None:
    order = Order.model_validate_json(encode(with_value("date_created", "2021-11-26T06:22:19.9999999+03:00")))
    assert order.created_at == datetime(2021, 11, 26, 3, 22, 19, 999999, tzinfo=UTC)


# --- plausibility: payment_dt near date_created, in seconds ------------------------------------------------


def with_payment_dt(value: int, date_created: str | None = None) -> bytes:
    doc: dict[str, Any] = with_value("payment.payment_dt", value)
    if date_created is not None:
        doc["date_created"] = date_created
    return encode(doc)


@pytest.mark.parametrize(
    "paid",
    [CREATED - 86_400, CREATED, CREATED + 30 * 86_400, CREATED + 1],
)
def test_payment_dt_at_the_edges_of_the_window_passes(paid: int) -> None:
    assert decode_order(with_payment_dt(paid), NO_CLOCK, NOW).payment.payment_dt == paid


@pytest.mark.parametrize(
    ("paid", "message"),
    [
        (CREATED - 86_401, "must not be more than 86400 s before date_created (Unix seconds)"),
        (CREATED + 30 * 86_400 + 1, "must not be more than 2592000 s after date_created (Unix seconds)"),
        (
            CREATED * 1000,
            "must be Unix seconds, not milliseconds (divided by 1000 it would fit date_created)",
        ),
        (1637907727000, "must be Unix seconds, not milliseconds (divided by 1000 it would fit date_created)"),
        (1, "must not be more than 86400 s before date_created (Unix seconds)"),
        (2**63 - 1, "must not be more than 2592000 s after date_created (Unix seconds)"),
    ],
)
def test_payment_dt_outside_the_window_is_refused(paid: int, message: str) -> None:
    assert refused(with_payment_dt(paid), NO_CLOCK) == [Violation("payment.payment_dt", message)]


def test_the_window_is_exact_to_the_microsecond_of_date_created() -> None:
    # 06:22:19.000001: exactly one day later is 1 us too late for a whole second before it.
    late_by_a_microsecond = "2021-11-26T06:22:19.000001Z"
    assert refused(with_payment_dt(CREATED - 86_400, late_by_a_microsecond), NO_CLOCK)
    assert decode_order(with_payment_dt(CREATED - 86_399, late_by_a_microsecond), NO_CLOCK, NOW)


def test_the_window_compares_instants_whatever_the_offset() -> None:
    # 09:22:19+03:00 is the canonical instant: the canonical payment_dt is 12 s before it.
    assert decode_order(with_payment_dt(CREATED - 12, "2021-11-26T09:22:19+03:00"), NO_CLOCK, NOW)
    assert refused(with_payment_dt(CREATED - 86_401, "2021-11-26T09:22:19+03:00"), NO_CLOCK)


def test_zero_and_negative_payment_dt_stay_field_errors() -> None:
    for paid in (0, -1637907727):
        assert [v.path for v in refused(with_payment_dt(paid))] == ["payment.payment_dt"]


def test_plausibility_can_be_switched_off_and_its_window_set() -> None:
    millis = with_payment_dt(CREATED * 1000)
    assert decode_order(millis, FIELDS_ONLY, NOW).payment.payment_dt == CREATED * 1000
    narrow = ValidationPolicy(cross_field_checks=False, payment_max_before_s=10, payment_max_after_s=0)
    assert refused(with_payment_dt(CREATED - 11), narrow)
    assert refused(with_payment_dt(CREATED + 1), narrow)
    assert decode_order(with_payment_dt(CREATED - 10), narrow, NOW)


def test_plausibility_and_cross_field_violations_are_listed_together() -> None:
    doc = with_value("payment.payment_dt", CREATED * 1000)
    doc["payment"]["amount"] = 5
    assert [v.path for v in refused(encode(doc))] == ["payment.amount", "payment.payment_dt"]


def test_a_date_far_from_the_clock_needs_its_payment_near_it() -> None:
    future = (NOW + timedelta(days=1)).isoformat()
    assert [v.path for v in refused(with_payment_dt(CREATED, future))] == [
        "date_created",
        "payment.payment_dt",
    ]
