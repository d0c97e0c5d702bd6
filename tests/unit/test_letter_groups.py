"""A dead letter's group: reason, first violation's path without indexes, the rule without values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from internal.domain.errors import InvalidOrder, PermanentError, Violation
from internal.domain.letter_groups import GROUP_CHARS, group_key, group_path, reason_of
from internal.domain.reasons import DeadLetterReason
from internal.domain.validation import ValidationPolicy, decode_order
from tests.orders import order_doc

NOW = datetime.now(UTC)


def group_of(raw: bytes) -> str:
    with pytest.raises(PermanentError) as caught:
        decode_order(raw, ValidationPolicy(), NOW)
    exc = caught.value
    violations = exc.violations if isinstance(exc, InvalidOrder) else ()
    return group_key(exc.reason, violations, str(exc))


def test_paths_lose_their_indexes() -> None:
    assert group_path("items[2].price") == "items[].price"
    assert group_path('$["x[1]"]') == '$["x[]"]'


def test_the_same_rule_on_other_items_and_values_is_one_group() -> None:
    docs = []
    for index, price in ((0, -1), (1, -50)):
        doc = order_doc()
        doc["items"] = [dict(doc["items"][0]) for _ in range(2)]
        doc["items"][index]["price"] = price
        docs.append(json.dumps(doc).encode())
    groups = {group_of(d) for d in docs}
    assert len(groups) == 1
    (group,) = groups
    assert group.startswith("invalid · items[].price · ")


def test_sums_group_by_the_rule_not_the_numbers() -> None:
    keys = set()
    for amount in (1, 2):
        doc = order_doc()
        doc["payment"]["amount"] = doc["payment"]["amount"] + amount
        keys.add(group_of(json.dumps(doc).encode()))
    assert keys == {"invalid · payment.amount · must be goods_total + delivery_cost + custom_fee"}


def test_an_added_field_is_its_own_group() -> None:
    doc = order_doc()
    doc["loyalty_tier"] = "gold"
    assert group_of(json.dumps(doc).encode()) == "invalid · loyalty_tier · unknown field"


def test_other_reasons_have_fixed_causes() -> None:
    assert group_of(b"") == "undecodable · no value"
    assert group_of(b"{nope") == "undecodable · not JSON"
    assert group_of(b"\xff") == "undecodable · not UTF-8"
    assert group_key(DeadLetterReason.CONFLICT) == "conflict · order_uid stored with other content"
    assert group_key(DeadLetterReason.PROCESSING_ERROR, (), "KeyError: 'x'") == "processing_error · KeyError"
    assert group_key(DeadLetterReason.PROCESSING_ERROR, (), "<html>: x") == "processing_error · other"
    assert reason_of("db_rejected · refused by PostgreSQL") == "db_rejected"


def test_a_group_is_bounded_whatever_the_key() -> None:
    group = group_key(DeadLetterReason.INVALID, [Violation('$["' + "x" * 5000 + '"]', "unknown field")])
    assert len(group) <= GROUP_CHARS
