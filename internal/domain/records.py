"""What the consumer hands to the store and the cache (the store answers an ``Outcome`` per record)."""

from __future__ import annotations

from dataclasses import dataclass

from internal.domain.order import Order, hash_form, json_digest, order_to_json_bytes


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A validated order with the two derived forms every later step needs, computed once."""

    order: Order
    content_hash: bytes
    json: bytes  # the order as the API serves it: encoded once, cached as is
    # SHA-256 of exactly ``json`` (the cache's ETag) when it is known; the content hash is that digest
    # unless date_created was spelt otherwise than in UTC with "Z" (``hash_form``).
    json_sha256: bytes | None = None

    @classmethod
    def of(cls, order: Order) -> OrderRecord:
        body = order_to_json_bytes(order)
        form = hash_form(order, body)
        digest = json_digest(form)  # == content_hash(order), without a second dump
        return cls(order, digest, body, digest if form is body else None)

    @property
    def uid(self) -> str:
        return self.order.order_uid
