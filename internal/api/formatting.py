"""Formatting helpers of the HTML pages. None of them raises: a value it cannot format is shown as it
is (an order whose ``payment_dt`` is in milliseconds is valid with consumer.plausibility_checks off, or
was stored before the rule, and its page must still answer 200)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from internal.domain.order import RFC3339

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
LAST_SECOND = 253_402_300_799  # 9999-12-31 23:59:59 UTC: the last one datetime can show


def unix_time(seconds: object) -> str:
    """Unix seconds as a UTC time; anything else (milliseconds past year 9999, a string) as it is."""
    if type(seconds) is int and 0 <= seconds <= LAST_SECOND:
        # The C calls, a third of datetime's cost: it is on every order page.
        return time.strftime(TIME_FORMAT, time.gmtime(seconds))
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime(TIME_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(seconds)


def iso_time(text: object) -> str:
    """An RFC 3339 text as sent - its date, its time to the second and its offset (``Z`` as UTC),
    e.g. ``2021-11-26 09:22:19 +03:00``; anything else as it is. Never converted: the page shows the
    time the producer wrote (its fraction is in the raw text next to it). The pattern is the validator's,
    so a text shown this way is one the consumer accepted."""
    if isinstance(text, str) and RFC3339.fullmatch(text):
        zone = "UTC" if text[-1] in "Zz" else text[-6:]
        return f"{text[:10]} {text[11:19]} {zone}"
    return str(text)


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
