"""Formatting helpers of the HTML pages. None of them raises: a value it cannot format is shown as it
is (an order whose ``payment_dt`` is in milliseconds is valid, and its page must still answer 200)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
NONE_SHOWN = "&mdash;"  # HTML: the pages put it in element content (and stay ASCII, order_page.py)
LAST_SECOND = 253_402_300_799  # 9999-12-31 23:59:59 UTC: the last one datetime can show
# The form the service's own encoder writes date_created in (UTC, "Z"): formatted by slicing.
CANONICAL_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")


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
    """An RFC 3339 text as a UTC time; anything else as it is."""
    if isinstance(text, str) and CANONICAL_UTC.fullmatch(text):
        return f"{text[:10]} {text[11:19]} UTC"
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
