"""What the consumer hands to the store and the cache (the store answers an ``Outcome`` per record)."""

from __future__ import annotations

from typing import NamedTuple

from internal.domain.order import Order, hash_form, json_digest, order_to_json_bytes


class OrderRecord(NamedTuple):
    """A validated order in the forms every later step needs, computed once.

    It keeps the order's uid and bytes, not the ``Order`` itself: a validated model is a dozen
    objects the cyclic garbage collector tracks (each pydantic model has its own fields-set), and a
    batch in flight kept thousands of them alive through every young collection, which then cost
    more than the validation (docs/performance.md, issue 25). Dropped right after ``of``, they are
    freed by reference counting and the collector never sees them. A NamedTuple (one per order):
    cheaper to make than a frozen dataclass."""

    uid: str
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
        return cls(order.order_uid, digest, body, digest if form is body else None)
