"""What went wrong with a dead letter, as one short key: the group the operator's console shows.

A group is the reason plus, for an invalid order, its first violation's path (indexes dropped:
``items[3].price`` and ``items[0].price`` are one problem) and kind (the rule without the message's
own values, ``Violation.kind``); for the other reasons, a fixed wording of the cause. It is computed
once, when the letter is written, from the structured error, never by parsing the error text later:
``internal/consumer`` hands it to the read model (``internal/store/dead_letters.py``) and the console
filters by it. The key is bounded (``GROUP_CHARS``), so a hostile key in the message cannot make a
group unbounded, and the vocabulary is here alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from internal.domain.errors import Violation
from internal.domain.reasons import DeadLetterReason

SEPARATOR: Final = " · "
GROUP_CHARS: Final = 200
PART_CHARS: Final = 90
_INDEX = re.compile(r"\[[0-9]+\]")

# The cause of a letter that has no violations, by reason; the error text is not part of the key
# (it holds values: sizes, byte positions, exception messages).
_CAUSES: Final = {
    DeadLetterReason.CONFLICT: "order_uid stored with other content",
    DeadLetterReason.DB_REJECTED: "refused by PostgreSQL",
}
# An undecodable value's cause, from the fixed beginnings of UndecodableMessage's texts
# (internal/domain/validation.py), the one place that words them.
_UNDECODABLE: Final = (
    ("message has no value", "no value"),
    ("message is ", "larger than the limit"),
    ("not valid UTF-8", "not UTF-8"),
    ("not a JSON document", "not JSON"),
)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def group_path(path: str) -> str:
    """A violation's path without its indexes: ``items[2].price`` -> ``items[].price``."""
    return _INDEX.sub("[]", path)


def group_key(reason: DeadLetterReason, violations: Sequence[Violation] = (), error: str = "") -> str:
    """The group of a letter: ``invalid · items[].price · must be at least 0``."""
    if violations:
        first = violations[0]
        rule = first.kind or first.message
        parts = [reason.value, _cut(group_path(first.path), PART_CHARS), _cut(rule, PART_CHARS)]
    elif reason is DeadLetterReason.UNDECODABLE:
        cause = next((c for prefix, c in _UNDECODABLE if error.startswith(prefix)), "other")
        parts = [reason.value, cause]
    elif reason is DeadLetterReason.PROCESSING_ERROR:
        # The exception's class: "KeyError: 'x'" -> "KeyError" (processor._text words it so).
        name = error.split(":", 1)[0].strip()
        parts = [reason.value, _cut(name if name.isidentifier() else "other", PART_CHARS)]
    else:
        parts = [reason.value, _CAUSES.get(reason, "other")]
    return _cut(SEPARATOR.join(parts), GROUP_CHARS)


def reason_of(group: str) -> str:
    """The reason a group key starts with."""
    return group.split(SEPARATOR, 1)[0]
