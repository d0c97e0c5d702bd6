"""Is this order stored with this content? One connection of its own, for the DLQ tool's replay.

A letter whose order is stored by now - with the same content - needs no replay: the service would
only count it as a duplicate. Asking the database makes that hold across runs of the tool, which
remembers nothing itself (docs/dlq.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from internal.domain.errors import TransientError
from internal.pkg.exc_text import first_line
from internal.store.writer import stored_hashes

CHUNK = 1000  # uids per query: a short array parameter, an index look-up each


class StoredContent:
    def __init__(self, dsn: str, connect_timeout_s: int = 5, application_name: str = "l0-dlq") -> None:
        try:
            self._conn: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
                dsn, autocommit=True, connect_timeout=connect_timeout_s, application_name=application_name
            )
        except psycopg.Error as exc:
            raise TransientError(f"PostgreSQL: {first_line(exc)}") from None

    def hashes_of(self, order_uids: Sequence[str]) -> dict[str, bytes]:
        """The stored content hashes of those of ``order_uids`` that are stored: one query per
        ``CHUNK`` uids, not one per letter."""
        found: dict[str, bytes] = {}
        try:
            with self._conn.cursor() as cur:
                for start in range(0, len(order_uids), CHUNK):
                    found.update(stored_hashes(cur, order_uids[start : start + CHUNK]))
        except psycopg.Error as exc:
            raise TransientError(f"PostgreSQL: {first_line(exc)}") from None
        return found

    def close(self) -> None:
        self._conn.close()
