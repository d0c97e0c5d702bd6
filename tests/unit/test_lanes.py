"""Lanes: the batching policy (an idle lane writes at once, arrivals during a write make the next
batch, waiting only under a backlog and bounded), batches bounded by count and by bytes, one batch
at a time per partition and at most one per worker, in-flight bytes. The clock is the ``now`` handed
in."""

from __future__ import annotations

from concurrent.futures import Future

from internal.consumer.lanes import BatchLimits, Lanes
from internal.consumer.messages import BatchReport, Inbound


def message(partition: int, offset: int, size: int = 10) -> Inbound:
    return Inbound("orders", partition, offset, None, b"x" * size, (), None, 1)


def test_a_batch_is_due_when_full_by_count_and_holds_no_more() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=3, max_bytes=10_000, max_wait_s=60))
    for offset in range(5):
        lanes.add(message(0, offset), now=0)
    ((lane, batch),) = lanes.due(now=0)
    assert [m.offset for m in batch] == [0, 1, 2]
    Lanes.start(lane, Future())
    assert list(lanes.due(now=100)) == []  # a lane runs one batch at a time


def test_a_batch_is_due_when_full_by_bytes_and_stays_within_them() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=100, max_bytes=250, max_wait_s=60))
    for offset in range(4):
        lanes.add(message(0, offset, size=100), now=0)
    ((_lane, batch),) = lanes.due(now=0)
    assert [m.offset for m in batch] == [0, 1]  # 200 bytes; a third would make 300
    assert lanes.bytes_in_flight() == 400  # two waiting, two in the batch


def test_successive_cuts_of_a_long_lane_count_each_message_by_its_own_size() -> None:
    """Sizes are remembered per waiting message: after one cut, the next is bounded by the sizes of
    the messages that are left, not those of the ones taken."""
    lanes = Lanes(1, BatchLimits(max_messages=3, max_bytes=250, max_wait_s=60))
    for offset, size in enumerate((100, 100, 10, 200, 40, 30, 250, 1)):
        lanes.add(message(0, offset, size=size), now=0)
    cuts: list[list[int]] = []
    while lanes.waiting():
        ((lane, batch),) = lanes.due(now=0)
        cuts.append([m.offset for m in batch])
        future: Future[BatchReport] = Future()
        Lanes.start(lane, future)
        future.set_result(BatchReport((), ()))
        list(lanes.finished())
    # 100+100+10 | 200+40 (+30 would pass 250) | 30 (+250 would) | 250 (+1 would) | 1
    assert cuts == [[0, 1, 2], [3, 4], [5], [6], [7]]
    assert lanes.bytes_in_flight() == 0


def test_a_message_larger_than_the_byte_bound_goes_alone() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=100, max_bytes=250, max_wait_s=60))
    lanes.add(message(0, 0, size=1000), now=0)
    lanes.add(message(0, 1, size=10), now=0)
    ((_lane, batch),) = lanes.due(now=0)
    assert [m.offset for m in batch] == [0]


def test_an_idle_lane_writes_at_once() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=100, max_bytes=10_000, max_wait_s=60))
    lanes.add(message(0, 0), now=1.0)
    ((_lane, batch),) = lanes.due(now=1.0)  # not a moment of waiting for more
    assert [m.offset for m in batch] == [0]
    assert not lanes.waiting()


def _next_batch_after_a_write(max_messages: int, arrivals: int) -> list[Inbound]:
    """A lane writes offset 0; ``arrivals`` messages come meanwhile; the batch after the write."""
    lanes = Lanes(1, BatchLimits(max_messages=max_messages, max_bytes=10_000, max_wait_s=60))
    lanes.add(message(0, 0), now=0)
    ((lane, first),) = lanes.due(now=0)
    future: Future[BatchReport] = Future()
    Lanes.start(lane, future)
    for offset in range(1, arrivals + 1):
        lanes.add(message(0, offset), now=0.001 * offset)
    assert list(lanes.due(now=0.01)) == []  # the write of its first batch runs
    assert lanes.waiting()
    future.set_result(BatchReport(tuple(first), ()))
    list(lanes.finished())
    ((_lane, second),) = lanes.due(now=0.02)
    return second


def test_messages_that_arrive_during_a_write_make_the_next_batch() -> None:
    second = _next_batch_after_a_write(max_messages=100, arrivals=3)
    assert [m.offset for m in second] == [1, 2, 3]  # all that came meanwhile, in one batch


def test_the_next_batch_still_keeps_within_the_bounds() -> None:
    second = _next_batch_after_a_write(max_messages=2, arrivals=3)
    assert [m.offset for m in second] == [1, 2]


def test_under_a_backlog_an_idle_lane_waits_for_a_full_batch_at_most_max_wait() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=3, max_bytes=10_000, max_wait_s=0.05))
    lanes.add(message(0, 0), now=1.0)
    assert list(lanes.due(now=1.01, backlog=True)) == []  # more is right behind: wait for it
    lanes.add(message(0, 1), now=1.02)
    assert list(lanes.due(now=1.049, backlog=True)) == []
    ((_lane, batch),) = lanes.due(now=1.05, backlog=True)  # the bound: the oldest waited 50 ms
    assert [m.offset for m in batch] == [0, 1]


def test_under_a_backlog_a_full_batch_goes_at_once() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=3, max_bytes=25, max_wait_s=60))
    for offset in range(3):
        lanes.add(message(0, offset), now=0)
    ((lane, batch),) = lanes.due(now=0, backlog=True)  # full by bytes (30 >= 25)
    assert [m.offset for m in batch] == [0, 1]
    Lanes.start(lane, Future())
    lanes2 = Lanes(1, BatchLimits(max_messages=3, max_bytes=10_000, max_wait_s=60))
    for offset in range(3):
        lanes2.add(message(0, offset), now=0)
    ((_lane, batch),) = lanes2.due(now=0, backlog=True)  # full by count
    assert len(batch) == 3


def test_at_most_slots_batches_run_and_the_longest_waiting_lane_goes_first() -> None:
    lanes = Lanes(2, BatchLimits(max_messages=10, max_bytes=10_000, max_wait_s=60))
    lanes.add(message(2, 0), now=0.0)
    lanes.add(message(0, 0), now=0.2)
    lanes.add(message(1, 0), now=0.1)
    started = []
    for lane, batch in lanes.due(now=1.0):
        Lanes.start(lane, Future())
        started.append(batch[0].partition)
    assert started == [2, 1]  # two slots: the two that waited longest
    assert list(lanes.due(now=2.0)) == []  # no free slot for partition 0 yet
    assert lanes.waiting()


def test_a_partition_runs_one_batch_at_a_time_however_many_slots_are_free() -> None:
    lanes = Lanes(4, BatchLimits(max_messages=1, max_bytes=10_000, max_wait_s=60))
    for offset in range(3):
        lanes.add(message(0, offset), now=0)
    lanes.add(message(1, 0), now=0)
    due = list(lanes.due(now=0))
    assert sorted((b[0].partition, b[0].offset) for _lane, b in due) == [(0, 0), (1, 0)]
    for lane, _batch in due:
        Lanes.start(lane, Future())
    assert list(lanes.due(now=1)) == []  # partition 0's next message waits for its running batch


def test_a_free_worker_takes_any_partition_with_work() -> None:
    # Six partitions, four workers: with lanes fixed to workers two of them had twice the work.
    lanes = Lanes(4, BatchLimits(max_messages=1, max_bytes=10_000, max_wait_s=60))
    for partition in range(6):
        lanes.add(message(partition, 0), now=partition)
    first = list(lanes.due(now=10))
    assert [b[0].partition for _lane, b in first] == [0, 1, 2, 3]
    futures: list[Future[BatchReport]] = []
    for lane, _batch in first:
        future: Future[BatchReport] = Future()
        Lanes.start(lane, future)
        futures.append(future)
    futures[0].set_result(BatchReport((), ()))
    list(lanes.finished())
    assert [b[0].partition for _lane, b in lanes.due(now=11)] == [4]  # one free slot: the oldest


def test_finished_batches_free_their_lane_and_their_bytes() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=10, max_bytes=10_000, max_wait_s=0))
    lanes.add(message(0, 0, size=50), now=0)
    ((lane, batch),) = lanes.due(now=0)
    future: Future[BatchReport] = Future()
    Lanes.start(lane, future)
    assert list(lanes.finished()) == []
    future.set_result(BatchReport(tuple(batch), ()))
    assert [b for b, _f in lanes.finished()] == [batch]
    assert lanes.bytes_in_flight() == 0
    assert list(lanes.finished()) == []  # each once


def test_forgetting_partitions_drops_their_waiting_messages_and_bytes() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=10, max_bytes=10_000, max_wait_s=60))
    lanes.add(message(0, 0, size=30), now=0)
    lanes.add(message(2, 0, size=70), now=0)
    lanes.forget({("orders", 2)})
    assert lanes.bytes_in_flight() == 30


def test_headers_count_towards_the_byte_bounds() -> None:
    lanes = Lanes(1, BatchLimits(max_messages=100, max_bytes=10_000, max_wait_s=60))
    heavy = Inbound("orders", 0, 0, None, b"v", (("big", b"h" * 20_000),), None, 1)
    lanes.add(heavy, now=0)
    assert lanes.bytes_in_flight() == 1 + 3 + 20_000
    ((_lane, batch),) = lanes.due(now=0)  # full by bytes already
    assert batch == [heavy]
