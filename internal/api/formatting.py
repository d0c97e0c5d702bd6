"""Formatting helpers of the HTML pages. None of them raises: a value it cannot format is shown as it
is (an order whose ``payment_dt`` is in milliseconds is valid, and its page must still answer 200)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
NONE_SHOWN = "—"


def unix_time(seconds: object) -> str:
    """Unix seconds as a UTC time; anything else (milliseconds past year 9999, a string) as it is."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime(TIME_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(seconds)


def iso_time(text: object) -> str:
    """An RFC 3339 text as a UTC time; anything else as it is."""
    try:
        return datetime.fromisoformat(text).astimezone(UTC).strftime(TIME_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(text)


def or_none(text: object) -> str:
    """An empty text as a dash, so an empty field reads as empty rather than as a missing one."""
    return NONE_SHOWN if text == "" else str(text)


@dataclass(frozen=True, slots=True)
class PaymentCheck:
    goods_total_ok: bool
    amount_ok: bool
    items_total: int
    expected_amount: int


def payment_check(order: dict[str, Any]) -> PaymentCheck:
    """Whether goods = sum of the items and amount = goods + delivery + customs (shown, not enforced:
    the validator's cross-field checks can be turned off)."""
    payment = order["payment"]
    items_total = sum(item["total_price"] for item in order["items"])
    expected = payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]
    return PaymentCheck(
        payment["goods_total"] == items_total, payment["amount"] == expected, items_total, expected
    )
