"""Finding one order for the API and the UI: the cache first, then PostgreSQL within the request's
time budget, back-filling the cache. A database failure is ``Unavailable`` - never "not found"."""

from __future__ import annotations

import re
from typing import Protocol

from internal.cache.lru import CachedOrder, OrderCache, make_entry
from internal.domain.errors import ServiceError
from internal.store.reader import StoredOrder

# The validator's rule for order_uid (internal/domain/order.py): a look-up that breaks it cannot exist.
UID = re.compile(r"[A-Za-z0-9]{1,64}")


class Unavailable(Exception):
    """The order store did not answer within the request's time budget."""


def valid_uid(uid: str) -> bool:
    return UID.fullmatch(uid) is not None


class OrderSource(Protocol):
    async def get(self, order_uid: str, timeout_s: float) -> StoredOrder | None:
        """The stored order or None; raises ``ServiceError`` when the database cannot answer in time."""
        ...


class OrderLookup:
    def __init__(self, cache: OrderCache, reader: OrderSource, timeout_s: float) -> None:
        self._cache = cache
        self._reader = reader
        self.timeout_s = timeout_s

    def cached(self, uid: str) -> CachedOrder | None:
        """The order when the cache has it: a dict look-up under a lock, no thread hop."""
        return self._cache.get(uid)

    async def load(self, uid: str) -> CachedOrder | None:
        """The order from PostgreSQL (back-filled into the cache), or None when no order has this uid.
        Raises ``Unavailable`` when the database fails or exceeds the request's time budget."""
        try:
            stored = await self._reader.get(uid, self.timeout_s)
        except ServiceError as exc:
            raise Unavailable(str(exc)) from exc
        if stored is None:
            return None
        entry = make_entry(stored.json)
        self._cache.put_entry(stored.uid, entry)  # back-fill: the next look-up is a hit
        return entry

    def remember_page(self, uid: str, entry: CachedOrder, page: bytes) -> None:
        """Keep the page rendered from ``entry`` with it in the cache (dropped if the entry changed)."""
        self._cache.attach_page(uid, entry, page)
