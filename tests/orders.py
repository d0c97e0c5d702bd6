"""Order messages for tests, made by gen_orders.py (the same generator the benchmarks use)."""

from __future__ import annotations

import json
import random
from typing import Any

import gen_orders


def order_doc(index: int = 0, seed: int = 7, items: int = 2) -> dict[str, Any]:
    doc: dict[str, Any] = gen_orders.make_valid_order(
        random.Random(seed * 100_003 + index), index, items, items
    )
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def order_bytes(index: int = 0, seed: int = 7, items: int = 2) -> bytes:
    return encode(order_doc(index, seed, items))
