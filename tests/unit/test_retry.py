"""The retry policy on its own: its verdict per failure, and ``attempt`` running a step under it
(outage start/end told once, abandoning only between retries, typed results)."""

from __future__ import annotations

import pytest

from internal.consumer.control import Abandoned, Control
from internal.consumer.retry import Attempt, RetryPolicy, Tally, Verdict, attempt
from internal.domain.causes import Cause
from internal.domain.errors import FatalError, RecordRejected, TimedOut, TransientError
from internal.pkg.backoff import Backoff
from tests.unit.test_processor import FakeOutage

POLICY = RetryPolicy(Backoff(0.01, 0.02), max_attempts=3)


@pytest.mark.parametrize(
    ("error", "tally", "several", "allowed", "verdict"),
    [
        (RecordRejected("x"), Tally(), True, 3, Verdict.SPLIT),
        (RecordRejected("x"), Tally(), False, 3, Verdict.REFUSE),
        (TimedOut("x"), Tally(transient=2, timeouts=2), True, 3, Verdict.RETRY),
        (TimedOut("x"), Tally(transient=3, timeouts=3), True, 3, Verdict.SPLIT),
        (TimedOut("x"), Tally(transient=99, timeouts=99), False, 3, Verdict.RETRY),  # alone: waits it out
        (TransientError("x"), Tally(transient=99), True, 3, Verdict.RETRY),
        (RuntimeError("bug"), Tally(unexpected=2), True, 3, Verdict.RETRY),
        (RuntimeError("bug"), Tally(unexpected=3), True, 3, Verdict.SPLIT),
        (RuntimeError("bug"), Tally(unexpected=3), False, 3, Verdict.REFUSE),
        (RuntimeError("bug"), Tally(unexpected=1), True, 1, Verdict.SPLIT),  # isolating: one attempt
    ],
)
def test_the_verdict_on_a_failed_write(
    error: Exception, tally: Tally, several: bool, allowed: int, verdict: Verdict
) -> None:
    assert POLICY.judge_write(error, tally, several=several, allowed=allowed) is verdict


def test_the_verdict_on_failed_dead_lettering() -> None:
    assert POLICY.judge_dead_letters(TransientError("x"), Tally(transient=50)) is Verdict.RETRY
    assert POLICY.judge_dead_letters(RuntimeError("x"), Tally(unexpected=2)) is Verdict.RETRY
    assert POLICY.judge_dead_letters(RuntimeError("x"), Tally(unexpected=3)) is Verdict.STOP


def run(
    script: list[Exception | str], wanted: list[bool] | None = None, outage: FakeOutage | None = None
) -> tuple[Attempt[str], FakeOutage]:
    """Run a step that raises or returns the script's items in turn."""
    outage, steps = outage or FakeOutage(), iter(script)
    flags = iter(wanted or [])

    def step() -> str:
        item = next(steps)
        if isinstance(item, Exception):
            raise item
        return item

    def judge(exc: Exception, tally: Tally) -> Verdict:
        return POLICY.judge_write(exc, tally, several=True, allowed=POLICY.max_attempts)

    control = Control(lambda: next(flags, True), lambda _s: None)
    return attempt(step, judge, POLICY, control, outage), outage


def test_a_step_that_succeeds_after_an_outage_tells_its_start_once_and_its_end() -> None:
    done, outage = run([TransientError("down"), TransientError("down"), TimedOut("slow"), "ok"])
    assert (done.verdict, done.value) == (Verdict.DONE, "ok")
    assert (outage.started, outage.retries, outage.ended) == (1, 3, 1)
    assert outage.causes == [Cause.DATABASE_UNAVAILABLE]


def test_a_bug_after_an_outage_ends_the_outage_and_counts_as_unexpected() -> None:
    bug = RuntimeError("bug")
    done, outage = run([TransientError("down"), bug, bug, bug])
    assert (done.verdict, done.error, done.tally.unexpected) == (Verdict.SPLIT, bug, 3)
    assert (outage.started, outage.ended) == (1, 1)


def test_a_refusal_ends_the_step_at_once_with_its_error() -> None:
    rejected = RecordRejected("constraint")
    done, outage = run([rejected])
    assert (done.verdict, done.error) == (Verdict.SPLIT, rejected)
    assert outage.started == 0


def test_a_step_no_longer_wanted_is_abandoned_between_retries_and_the_outage_ends() -> None:
    outage = FakeOutage()
    with pytest.raises(Abandoned):
        run([TransientError("down"), "never reached"], wanted=[True, False], outage=outage)
    assert (outage.started, outage.ended) == (1, 1)


def test_fatal_errors_and_abandons_pass_through_unjudged() -> None:
    for error in (FatalError("x", cause=Cause.DATABASE_UNUSABLE), Abandoned()):
        with pytest.raises(type(error)):
            run([error])
