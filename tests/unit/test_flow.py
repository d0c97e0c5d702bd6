"""Flow control on its own: pause for an outage and resume after it, room by messages and by bytes,
the backlog signal, and how long a poll may block."""

from __future__ import annotations

from dataclasses import dataclass

from internal.consumer.flow import BUSY_POLL_S, IDLE_POLL_S, QUIET_POLL_S, FlowControl, FlowPolicy
from internal.domain.causes import Cause
from tests.unit.fake_kafka import FakeConsumer


@dataclass
class Outages:
    in_outage: bool = False
    outage: Cause | None = None


@dataclass
class Budget:
    messages: int = 0
    bytes: int = 0


def flow(
    outages: Outages, budget: Budget, told: list[bool] | None = None
) -> tuple[FakeConsumer, FlowControl]:
    consumer = FakeConsumer()
    consumer.assigned = [0, 1]
    control = FlowControl(
        consumer,
        outages,
        FlowPolicy(max_in_flight=10, max_in_flight_bytes=1000, chunk=5),
        in_flight=lambda: budget.messages,
        bytes_in_flight=lambda: budget.bytes,
        on_paused=(told.append if told is not None else lambda _p: None),
    )
    return consumer, control


def test_an_outage_pauses_every_assigned_partition_once_and_its_end_resumes_them() -> None:
    outages, told = Outages(), list[bool]()
    consumer, control = flow(outages, Budget(), told)
    control.update()
    assert (control.paused, consumer.paused) == (False, set())
    outages.in_outage, outages.outage = True, Cause.DATABASE_UNAVAILABLE
    control.update()
    control.update()
    assert (control.paused, consumer.paused) == (True, {0, 1})
    assert control.should_poll  # paused: poll anyway, to keep the group
    assert control.held_back
    outages.in_outage = False
    control.update()
    assert (control.paused, consumer.paused) == (False, set())
    assert told == [False, True, True, False]


def test_room_runs_out_by_messages_or_by_bytes() -> None:
    budget = Budget()
    _, control = flow(Outages(), budget)
    assert control.update()
    assert control.should_poll
    assert not control.held_back
    budget.messages = 10
    assert not control.update()
    assert not control.should_poll
    assert control.held_back
    budget.messages, budget.bytes = 9, 1000
    assert not control.update()
    budget.bytes = 999
    assert control.update()


def test_a_full_chunk_is_a_backlog() -> None:
    _, control = flow(Outages(), Budget())
    control.polled(5)
    assert control.backlog
    control.polled(4)
    assert not control.backlog


def test_a_poll_blocks_briefly_while_messages_wait_and_long_when_all_is_quiet() -> None:
    outages = Outages()
    _, control = flow(outages, Budget())
    control.update()
    assert control.poll_timeout(waiting=True, busy=True) == BUSY_POLL_S
    assert control.poll_timeout(waiting=False, busy=True) == IDLE_POLL_S
    assert control.poll_timeout(waiting=False, busy=False) == QUIET_POLL_S
    outages.in_outage = True
    control.update()  # paused: waiting messages are no hurry for an outage's length
    assert control.poll_timeout(waiting=True, busy=True) == IDLE_POLL_S


def test_a_fresh_assignment_is_unpaused_and_re_paused_by_the_next_update() -> None:
    outages = Outages(in_outage=True)
    consumer, control = flow(outages, Budget())
    control.update()
    control.assigned()
    consumer.paused.clear()  # the loop resumed the new assignment
    control.update()
    assert consumer.paused == {0, 1}
