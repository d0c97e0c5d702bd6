"""Repeated keys in one JSON object: found at any depth, reported by path, cheaply ruled out.

JSON parsers disagree about ``{"entry": "WBIL", "entry": "X"}``: pydantic (and Python's json) keep
the last value, others the first or refuse. Two readers of the topic could then disagree about what
an order says, so such a message is invalid (docs/validation.md). Keys are compared as decoded, so
``"entry"`` and ``"\\u0065ntry"`` are the same key.

An exact search costs a second parse (``json.loads`` with a hook, about as much as the validating
parse itself), so a valid order first gets a count that proves most messages free of repeats for the
cost of two scans of the text (``cannot_repeat``); only when it cannot, the exact search runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Final

from internal.domain.errors import Violation, location
from internal.domain.order import Delivery, Item, Order, Payment

DUPLICATE_KEY: Final = "duplicate key (the same key twice in one object)"
# Keys of a valid order without its items, and of each item: extra keys are refused and none is
# optional, so a valid order holds exactly these, plus one more per repetition.
ORDER_KEYS: Final = len(Order.model_fields) + len(Delivery.model_fields) + len(Payment.model_fields)
ITEM_KEYS: Final = len(Item.model_fields)


def cannot_repeat(text: str, order: Order) -> bool:
    """True when ``text``, which decoded to the valid ``order``, provably has no repeated key.

    Every key occurrence is followed by exactly one ``:`` outside strings; every other ``:`` is
    inside a string. ``date_created`` holds two or three, and when its text appears between quotes
    in ``text`` those are raw colons inside a string (an escaped ``\\u003a`` would not be). So the
    colons of ``text`` are at least the key occurrences plus the colons of ``date_created``, and the
    key occurrences are at least the order's keys: equality leaves no room for a repetition. Any other
    colon in a value (an address like "Apt: 5") only sends the message to the exact search.
    """
    keys = ORDER_KEYS + ITEM_KEYS * len(order.items)
    date = order.date_created
    return text.count(":") == keys + date.count(":") and f'"{date}"' in text


class _Pairs(list[tuple[str, object]]):
    """A JSON object as its key/value pairs in order, repetitions kept (json's object_pairs_hook)."""


def duplicate_keys(text: str) -> list[Violation]:
    """One violation per repeated key of ``text`` (at its second and later occurrences), by path;
    none when ``text`` is not JSON (the caller reports that)."""
    try:
        document = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return []
    return [Violation(location(path), DUPLICATE_KEY) for path in _repeated(document)]


def _repeated(document: object) -> Iterator[tuple[int | str, ...]]:
    # Iterative, in document order: depth is bounded by the parser, but a stack costs nothing here.
    pending: list[tuple[tuple[int | str, ...], object]] = [((), document)]
    while pending:
        path, node = pending.pop()
        children: list[tuple[tuple[int | str, ...], object]] = []
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, value in node:
                if key in seen:
                    yield (*path, key)
                seen.add(key)
                children.append(((*path, key), value))
        elif isinstance(node, list):
            children = [((*path, index), value) for index, value in enumerate(node)]
        pending.extend(reversed(children))
