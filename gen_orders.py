#!/usr/bin/env python3
"""Generate mock L0 order messages: a JSON array with one compact order per line.

The output is valid JSON *and* line-streamable, so the producer can send a million orders without
loading the file. A chosen fraction of orders is made invalid with exactly one known defect each, so the
consumer's dead-letter path can be exercised and its counts checked against the summary printed here.
Standard library only: it must run anywhere ``python3`` does, before the project is installed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

Order = dict[str, Any]

# A fixed reference instead of the wall clock, so that ``--seed`` output is byte-identical on any day.
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
MAX_AGE_SECONDS = 2 * 365 * 86400
MAX_ITEMS_LIMIT = 1000
PROGRESS_THRESHOLD = 10_000

_UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAMES = ("Test Testov", "Ivan Petrov", "Anna Smirnova", "John Smith", "Noa Levi", "Мария Иванова")
_HANDLES = ("test", "ivan.petrov", "anna", "jsmith", "noa.levi", "maria_i")
_CITIES = ("Kiryat Mozkin", "Moscow", "Kazan", "Berlin", "Almaty", "Tel Aviv", "Новосибирск")
_REGIONS = ("Kraiot", "Moscow Oblast", "Tatarstan", "Berlin", "Almaty Region", "Сибирь")
_STREETS = ("Ploshad Mira", "Tverskaya", "Main St", "Hauptstrasse", "Abay Ave", "ул. Ленина")
_LOCALES = ("en", "ru", "de", "fr", "es", "en-US", "ru-RU", "de-DE", "kk-KZ")
_CURRENCIES = ("USD", "EUR", "RUB", "GBP", "KZT", "BYN", "CNY", "ILS")
_PROVIDERS = ("wbpay", "visa", "mastercard", "mir", "paypal")
_BANKS = ("alpha", "sber", "tinkoff", "vtb", "hapoalim")
_SERVICES = ("meest", "dhl", "cdek", "boxberry", "wb")
_PRODUCTS = ("Mascaras", "Lipstick", "T-shirt", "Sneakers", "Headphones", "Backpack", "Кружка")
_BRANDS = ("Vivienne Sabo", "Nike", "Adidas", "Xiaomi", "Samsung", "Levi's", "LEGO")
_SIZES = ("0", "S", "M", "L", "XL", "42")


def _scramble(index: int) -> int:
    """Map an index to a random-looking 36-bit number, bijectively, so uids are unique by construction."""
    return ((index * 0x9E3779B1) ^ 0x5BD1E995) & 0xF_FFFF_FFFF


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_valid_order(rng: random.Random, index: int, min_items: int, max_items: int) -> Order:
    """Build order number ``index`` of a file; it satisfies every validation rule, cross-field ones too."""
    uid = f"{rng.getrandbits(44):011x}{_scramble(index):09x}"
    track = "WBIL" + "".join(rng.choices(_UPPER_ALNUM, k=10))
    created = BASE_TIME - timedelta(seconds=rng.randint(60, MAX_AGE_SECONDS))
    items: list[dict[str, Any]] = []
    for position in range(rng.randint(min_items, max_items)):
        price, sale = rng.randint(100, 50_000), rng.randint(0, 95)  # price >= 100, so every total > 0
        items.append(
            {
                "chrt_id": rng.randint(1, 9_999_999),
                "track_number": track,
                "price": price,
                "rid": f"{rng.getrandbits(72):018x}{position:03d}",
                "name": rng.choice(_PRODUCTS),
                "sale": sale,
                "size": rng.choice(_SIZES),
                "total_price": price * (100 - sale) // 100,
                "nm_id": rng.randint(1, 9_999_999),
                "brand": rng.choice(_BRANDS),
                "status": rng.choice((202, 200, 201, 300)),
            }
        )
    goods_total = sum(item["total_price"] for item in items)
    delivery_cost = rng.choice((0, 300, 500, 1000, 1500))
    custom_fee = rng.choice((0, 0, 0, rng.randint(1, 500)))
    return {
        "order_uid": uid,
        "track_number": track,
        "entry": "WBIL",
        "delivery": {
            "name": rng.choice(_NAMES),
            "phone": f"+{rng.randint(1, 9)}{rng.randint(0, 10**10 - 1):010d}",
            "zip": str(rng.randint(10_000, 9_999_999)),
            "city": rng.choice(_CITIES),
            "address": f"{rng.choice(_STREETS)} {rng.randint(1, 200)}",
            "region": rng.choice(_REGIONS),
            "email": f"{rng.choice(_HANDLES)}{rng.randint(1, 9999)}@example.com",
        },
        "payment": {
            "transaction": uid,
            "request_id": rng.choice(("", "", f"req{rng.randint(1, 10**6)}")),
            "currency": rng.choice(_CURRENCIES),
            "provider": rng.choice(_PROVIDERS),
            "amount": goods_total + delivery_cost + custom_fee,
            "payment_dt": int(created.timestamp()) - rng.randint(0, 60),
            "bank": rng.choice(_BANKS),
            "delivery_cost": delivery_cost,
            "goods_total": goods_total,
            "custom_fee": custom_fee,
        },
        "items": items,
        "locale": rng.choice(_LOCALES),
        "internal_signature": "",
        "customer_id": f"customer{rng.randint(1, 99_999)}",
        "delivery_service": rng.choice(_SERVICES),
        "shardkey": str(rng.randint(0, 9)),
        "sm_id": rng.randint(1, 1000),
        "date_created": _rfc3339(created),
        "oof_shard": str(rng.randint(0, 9)),
    }


# --- Defects: each mutates a valid order so that exactly one rule breaks, where that is possible. ---

# (section, key) pairs whose value is plain text with no format or cross-field rule attached.
_FREE_TEXT: tuple[tuple[str | None, str], ...] = (
    (None, "entry"),
    (None, "customer_id"),
    (None, "delivery_service"),
    ("delivery", "name"),
    ("delivery", "city"),
    ("delivery", "address"),
    ("delivery", "region"),
    ("payment", "provider"),
    ("payment", "bank"),
)


def _container(order: Order, section: str | None) -> dict[str, Any]:
    target: dict[str, Any] = order if section is None else order[section]
    return target


def _set_free_text(order: Order, rng: random.Random, value: str) -> None:
    section, key = rng.choice(_FREE_TEXT)
    _container(order, section)[key] = value


def _resum(order: Order) -> None:
    """Recompute goods_total and amount after items changed, so no sum rule breaks by accident."""
    payment = order["payment"]
    payment["goods_total"] = sum(item["total_price"] for item in order["items"])
    payment["amount"] = payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]


def _bad_uid_charset(order: Order, rng: random.Random) -> None:
    # payment.transaction keeps the good uid: it has the same charset rule, which would break a second time.
    uid = order["order_uid"]
    order["order_uid"] = f"{uid[:10]}{rng.choice('-!')}{uid[10:]}"  # still unique: the insertion is injective


def _negative_amount(order: Order, rng: random.Random) -> None:
    payment = order["payment"]
    key = rng.choice(("delivery_cost", "custom_fee"))
    payment[key] = -rng.randint(1, min(payment["goods_total"], 100))  # keeps amount itself >= 0
    payment["amount"] = payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]


def _wrong_type(order: Order, rng: random.Random) -> None:
    section, key = rng.choice(((None, "sm_id"), ("payment", "payment_dt"), ("delivery", "zip")))
    target = _container(order, section)
    value = target[key]
    target[key] = int(value) if isinstance(value, str) else rng.choice((str(value), float(value), True))


def _unknown_field(order: Order, rng: random.Random) -> None:
    target = rng.choice((order, order["delivery"], order["payment"], order["items"][0]))
    target[rng.choice(("extra_field", "comment", "debug"))] = "unexpected"


def _missing_field(order: Order, rng: random.Random) -> None:
    section, key = rng.choice((*_FREE_TEXT, (None, "locale"), (None, "sm_id"), (None, "shardkey")))
    del _container(order, section)[key]


def _sum_mismatch(order: Order, rng: random.Random) -> None:
    order["payment"]["goods_total"] += 1
    order["payment"]["amount"] += 1  # amount stays goods_total + fees: only the goods sum is wrong


def _amount_mismatch(order: Order, rng: random.Random) -> None:
    order["payment"]["amount"] += 1


def _track_mismatch(order: Order, rng: random.Random) -> None:
    order["items"][-1]["track_number"] = "WBIL" + "".join(rng.choices(_UPPER_ALNUM, k=11))


def _future_date(order: Order, rng: random.Random) -> None:
    created = datetime(2095, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 1800))
    order["date_created"] = _rfc3339(created)
    order["payment"]["payment_dt"] = int(created.timestamp())  # paid with it: only the date is wrong


def _empty_items(order: Order, rng: random.Random) -> None:
    order["items"] = []  # goods_total is left as is: an order without items has nothing to sum


def _duplicate_rid(order: Order, rng: random.Random) -> None:
    items = order["items"]
    if len(items) == 1:
        items.append(dict(items[0]))
        _resum(order)
    else:
        items[1]["rid"] = items[0]["rid"]


def _sale_out_of_range(order: Order, rng: random.Random) -> None:
    item = order["items"][0]
    item["sale"] = rng.choice((150, 101, -rng.randint(1, 50)))
    if item["sale"] < 0:  # total_price = price * (100 - sale) // 100 stays positive: keep every sum right
        item["total_price"] = item["price"] * (100 - item["sale"]) // 100
        _resum(order)


DEFECTS: dict[str, Callable[[Order, random.Random], None]] = {
    "bad_uid_charset": _bad_uid_charset,
    "empty_required_field": lambda order, rng: _set_free_text(order, rng, ""),
    "bad_phone": lambda order, rng: order["delivery"].update(
        phone=rng.choice(("12345678", "+0123456789", "+7 (999) 123-45-67", "+123"))
    ),
    "bad_email": lambda order, rng: order["delivery"].update(
        email=rng.choice(("not-an-email", "user@", "@example.com", "user example.com"))
    ),
    "bad_zip": lambda order, rng: order["delivery"].update(zip=rng.choice(("AB12CD", "12-345", "zip"))),
    "bad_currency": lambda order, rng: order["payment"].update(currency=rng.choice(("XYZ", "usd", "US"))),
    "negative_amount": _negative_amount,
    "wrong_type": _wrong_type,
    "unknown_field": _unknown_field,
    "missing_field": _missing_field,
    "sum_mismatch": _sum_mismatch,
    "amount_mismatch": _amount_mismatch,
    "track_mismatch": _track_mismatch,
    "future_date": _future_date,
    "empty_items": _empty_items,
    "duplicate_rid": _duplicate_rid,
    "sale_out_of_range": _sale_out_of_range,
    "bad_locale": lambda order, rng: order.update(locale=rng.choice(("en_US", "123", "en-", "e"))),
    "too_long_field": lambda order, rng: _set_free_text(order, rng, "x" * 1000),  # address allows 512
    "control_char": lambda order, rng: _set_free_text(order, rng, "Bad" + rng.choice("\x00\n\x1b") + "Value"),
    "bad_date_format": lambda order, rng: order.update(
        date_created=rng.choice(("26.11.2021 06:22:19", "2021-11-26 06:22:19", "2021-11-26T06:22:19"))
    ),
}
DEFECT_KINDS: tuple[str, ...] = tuple(DEFECTS)


def apply_defect(order: Order, kind: str, rng: random.Random) -> Order:
    """Break ``order`` in place with the defect ``kind`` (one of ``DEFECT_KINDS``) and return it."""
    DEFECTS[kind](order, rng)
    return order


def generate(
    n: int, min_items: int = 1, max_items: int = 5, invalid_rate: float = 0.0, seed: int | None = None
) -> Iterator[tuple[Order, str | None]]:
    """Yield ``n`` orders as ``(order, defect kind or None)``; exactly ``round(n * invalid_rate)`` are bad.

    Invalid positions are drawn by selection sampling, which gives the exact count in O(1) memory.
    """
    if n < 0 or not 1 <= min_items <= max_items <= MAX_ITEMS_LIMIT or not 0.0 <= invalid_rate <= 1.0:
        raise ValueError(f"bad arguments: {n=} {min_items=} {max_items=} {invalid_rate=}")
    rng = random.Random(seed)
    still_invalid = round(n * invalid_rate)
    for index in range(n):
        is_invalid = rng.random() * (n - index) < still_invalid
        order = make_valid_order(rng, index, min_items, max_items)
        if not is_invalid:
            yield order, None
            continue
        still_invalid -= 1
        kind = rng.choice(DEFECT_KINDS)
        yield apply_defect(order, kind, rng), kind


def write_orders(orders: Iterator[tuple[Order, str | None]], out: TextIO, total: int) -> Counter[str]:
    """Stream ``orders`` as a JSON array, one per line; return counts per defect kind ('valid' for none)."""
    counts: Counter[str] = Counter()
    step = max(total // 10, 1)
    out.write("[")
    for written, (order, defect) in enumerate(orders, start=1):
        out.write(",\n" if written > 1 else "\n")
        out.write(json.dumps(order, ensure_ascii=False, separators=(",", ":")))
        counts[defect or "valid"] += 1
        if total >= PROGRESS_THRESHOLD and written % step == 0:
            print(f"gen_orders: {written * 100 // total}% ({written}/{total})", file=sys.stderr)
    out.write("\n]\n")
    return counts


def _write_atomically(path: str, write: Callable[[TextIO], Counter[str]]) -> Counter[str]:
    """Write into a temporary file next to ``path`` and rename it, so readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            counts = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise
    return counts


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"within {low}..{high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bounds}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"{value} is not a fraction in 0..1 (e.g. 0.1 for 10%)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI of the Go original (-n, --min-items, --max-items, --invalid-rate, -o) plus --seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("-n", "--num-orders", type=_bounded_int(0), default=100, help="orders to write (%(default)s)")
    add("--min-items", type=_bounded_int(1, MAX_ITEMS_LIMIT), default=1, help="per order (%(default)s)")
    add("--max-items", type=_bounded_int(1, MAX_ITEMS_LIMIT), default=5, help="per order (%(default)s)")
    add("--invalid-rate", type=_fraction, default=0.0, help="fraction 0..1 of orders with one defect")
    add("-o", "--output", default="mock.json", help="file to write, '-' for stdout (%(default)s)")
    add("--seed", type=int, default=None, help="same seed, byte-identical output (default: random)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write the orders and a summary to stderr; 0 on success, 1 if the file cannot be written, 2 on usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.min_items > args.max_items:
        parser.error(f"--min-items ({args.min_items}) must not exceed --max-items ({args.max_items})")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**63)
    total = args.num_orders
    orders = generate(total, args.min_items, args.max_items, args.invalid_rate, seed)

    def write(out: TextIO) -> Counter[str]:
        return write_orders(orders, out, total)

    if args.output == "-":
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(encoding="utf-8")  # names are not ASCII-only
        counts = write(sys.stdout)
    else:
        try:
            counts = _write_atomically(args.output, write)
        except OSError as exc:
            print(f"gen_orders: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    valid = counts.pop("valid", 0)
    print(
        f"gen_orders: total={total} valid={valid} invalid={total - valid} seed={seed} output={args.output}",
        file=sys.stderr,
    )
    for kind, count in sorted(counts.items()):
        print(f"gen_orders: defect {kind}={count}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
