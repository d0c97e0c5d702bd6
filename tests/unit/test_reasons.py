"""One vocabulary of dead-letter reasons: every place that spells them derives from DeadLetterReason."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from internal.domain import errors
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from internal.tools.dlq import build_parser
from internal.tools.dlq_letters import REASONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n#", 1)[0]


def test_the_consumer_doc_lists_exactly_the_reasons() -> None:
    table = section((DOCS / "consumer.md").read_text(encoding="utf-8"), "### Dead-letter reasons")
    assert re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE) == list(DeadLetterReason.values())


def test_every_reason_is_a_dead_lettered_outcome_and_no_other_is() -> None:
    dead = [o for o in Outcome if o.dead_lettered]
    assert [o.reason for o in dead] == list(DeadLetterReason)
    assert {o.value for o in Outcome} - set(DeadLetterReason.values()) == {"stored", "duplicate"}


def test_the_dlq_tool_offers_exactly_the_reasons() -> None:
    assert DeadLetterReason.values() == REASONS
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in ("list", "replay"):
        (reason,) = [a for a in commands.choices[name]._actions if "--reason" in a.option_strings]
        assert tuple(reason.choices or ()) == DeadLetterReason.values()


def test_the_permanent_errors_carry_reasons_of_the_vocabulary() -> None:
    permanent = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.PermanentError)
    ]
    assert {c.reason for c in permanent} <= set(DeadLetterReason)
