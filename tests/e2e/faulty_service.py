"""The real service with one fault injected from outside, for the end-to-end tests of bugs.

A bug cannot be provoked with a message (every expected failure has its row in the decision table),
so this entry point patches one method of the real service before running ``l0-service serve``
exactly as cmd/service.py does. ``L0_TEST_FAULT`` picks the fault:

* ``store:<order_uid>`` - every batch write that holds this order raises RuntimeError (an
  unexpected exception in a batch);
* ``poll:<n>`` - the n-th dispatch of the poll loop raises RuntimeError (an exception on the poll
  thread, like a failing pause/resume/assign);
* ``txn-pause:<seconds>`` - every dead-letter transaction pauses this long after its letters and
  offsets were sent and before it commits, and says so on stdout (``injected_txn_pause``): the window
  between the database commit of the orders and the transaction commit, made wide for a SIGKILL.

Test code only: nothing in internal/ knows about it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from internal import app
from internal.consumer.loop import ConsumerLoop
from internal.consumer.transactions import TransactionalCommit
from internal.domain.outcomes import Outcome
from internal.domain.records import OrderRecord
from internal.store.writer import PostgresOrderWriter


def inject(fault: str) -> None:
    kind, _, arg = fault.partition(":")
    if kind == "store":
        write = PostgresOrderWriter.write_batch

        def failing_write(self: PostgresOrderWriter, records: Sequence[OrderRecord]) -> list[Outcome]:
            if any(r.uid == arg for r in records):
                raise RuntimeError(f"injected failure for {arg}")
            return write(self, records)

        PostgresOrderWriter.write_batch = failing_write  # type: ignore[method-assign]
    elif kind == "poll":
        dispatch = ConsumerLoop._dispatch
        calls = [0]

        def failing_dispatch(self: ConsumerLoop) -> None:
            dispatch(self)
            if any(self._lanes.running()):
                calls[0] += 1
                if calls[0] == int(arg):
                    raise RuntimeError("injected failure on the poll thread")

        ConsumerLoop._dispatch = failing_dispatch  # type: ignore[method-assign]
    elif kind == "txn-pause":
        commit = TransactionalCommit._commit_until

        def paused_commit(self: TransactionalCommit, deadline: float) -> None:
            print('{"event": "injected_txn_pause"}', flush=True)
            time.sleep(float(arg))
            commit(self, deadline + float(arg))

        TransactionalCommit._commit_until = paused_commit  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown L0_TEST_FAULT {fault!r}")


if __name__ == "__main__":
    inject(os.environ["L0_TEST_FAULT"])
    sys.exit(app.main(sys.argv[1:]))
