"""What templates/order.html shows besides the order's own values: the values that need logic, so the
template only places them (and autoescaping escapes them with everything else)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from internal.api.formatting import iso_time, payment_check, unix_time


def order_context(order: dict[str, Any]) -> dict[str, Any]:
    """The template's variables for ``order`` (decoded JSON). Raises KeyError/TypeError on a document
    that is not the shape of an order; the caller shows such a document raw."""
    created, created_raw = _with_raw(iso_time(order["date_created"]), order["date_created"])
    paid_at = order["payment"]["payment_dt"]
    paid, paid_raw = _with_raw(unix_time(paid_at), paid_at)
    return {
        "o": order,
        "uid_url": quote(order["order_uid"], safe=""),
        "created": created,
        "created_raw": created_raw,
        "paid": paid,
        "paid_raw": paid_raw,
        "check": payment_check(order),
        "items": list(enumerate(order["items"], 1)),  # numbered here: Jinja's ``loop`` costs more
        "request_id": "",  # an order page is cached with the order: no request id on it (base.html)
    }


def _with_raw(formatted: str, raw: object) -> tuple[str, str | None]:
    """A formatted time and the value as sent, shown in small print; None for the latter when they
    are the same (a value that could not be formatted, e.g. a payment_dt in milliseconds)."""
    text = str(raw)
    return formatted, None if formatted == text else text
