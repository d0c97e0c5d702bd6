"""How a running batch learns that it should give up, and how it says it did.

The poll thread hands every batch a ``Control``; the worker asks ``wanted()`` between retries and
sleeps with ``sleep()``, which wakes early once the batch is no longer wanted (shutdown, or a revoke
of one of its partitions). Giving up is ``Abandoned``: nothing of the batch is committed, and its
messages are delivered again after the restart or rebalance.
"""

from __future__ import annotations

from collections.abc import Callable


class Abandoned(Exception):
    """The batch was given up because the service stops or its partitions were revoked.
    Nothing of it may be committed; the messages will be delivered again."""


class Control:
    """``wanted()`` turns False on shutdown or revoke, and ``sleep()`` wakes early in that case.
    The poll thread provides a real one; tests a fake."""

    def __init__(self, wanted: Callable[[], bool], sleep: Callable[[float], object]) -> None:
        self.wanted = wanted
        self.sleep = sleep
