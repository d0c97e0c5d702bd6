"""What the consumer hands to the store and the cache, and what the store answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from internal.domain.order import Order, json_digest, order_to_json_bytes


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A validated order with the two derived forms every later step needs, computed once."""

    order: Order
    content_hash: bytes
    json: bytes  # the order as the API serves it: encoded once, cached as is

    @classmethod
    def of(cls, order: Order) -> OrderRecord:
        body = order_to_json_bytes(order)
        return cls(order=order, content_hash=json_digest(body), json=body)  # == content_hash(order)

    @property
    def uid(self) -> str:
        return self.order.order_uid


class WriteResult(Enum):
    STORED = "stored"  # new order, now durable
    DUPLICATE = "duplicate"  # same uid, same content: nothing to do
    CONFLICT = "conflict"  # same uid, different content: the stored one wins
