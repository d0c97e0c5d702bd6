"""What an operator can do with chosen dead letters: re-validate them (a dry run) or replay them.

Shared by the console (internal/api/dlq_console.py) and ``l0-dlq``: the letters are chosen from the
read model (internal/store/dead_letters.py) and fetched from the dead-letter topic by their
partition and offset (``read_letters_at``, read_committed), at most ``cap`` of them per action, so an
action's memory is bounded by its cap whatever the topic holds. Replaying goes through
``dlq_replay.replay``, the one implementation the CLI's ``replay`` uses too: to each letter's original
topic, stubs and conflicts skipped, already-stored orders skipped.

Re-validating runs the validator the service runs now (``consumer.*`` settings) over each letter's
value and counts what would be stored, what would still fail (by group, the console's vocabulary),
and what is stored already. Nothing is written.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Producer

from internal.domain.errors import InvalidOrder, PermanentError, Violation
from internal.domain.letter_groups import group_key
from internal.domain.order import content_hash
from internal.domain.reasons import DeadLetterReason
from internal.domain.validation import ValidationPolicy, decode_order
from internal.store.dead_letters import LetterRow
from internal.store.stored import StoredContent
from internal.tools.dlq_letters import Letter, Selection, ToolError, read_letters_at
from internal.tools.dlq_replay import ReplayStats, StoredCheck, Targets, open_producer, replay


@dataclass
class RevalidateStats:
    """The dry run's verdicts over the chosen letters."""

    chosen: int = 0
    fetched: int = 0  # found in the topic (retention may have deleted some)
    would_store: int = 0
    already_stored: int = 0
    would_conflict: int = 0
    stubs: int = 0
    still_failing: Counter[str] = field(default_factory=Counter)  # by group

    @property
    def failing(self) -> int:
        return self.still_failing.total()

    def summary(self) -> str:
        return (
            f"re-validate: chosen {self.chosen}, fetched {self.fetched}, would store {self.would_store}, "
            f"already stored {self.already_stored}, would conflict {self.would_conflict}, "
            f"stubs {self.stubs}, still failing {self.failing}"
        )


def revalidate(
    letters: Sequence[Letter], policy: ValidationPolicy, stored: StoredCheck, now: datetime | None = None
) -> RevalidateStats:
    """The current rules over the letters' values; nothing is written or sent."""
    now = now or datetime.now(UTC)
    stats = RevalidateStats(chosen=len(letters), fetched=len(letters))
    passing: list[tuple[str, bytes]] = []
    for letter in letters:
        if letter.truncated:  # only the first bytes are here: no verdict possible
            stats.stubs += 1
            continue
        try:
            order = decode_order(letter.value, policy, now)
        except PermanentError as exc:
            violations = exc.violations if isinstance(exc, InvalidOrder) else ()
            stats.still_failing[group_key(exc.reason, violations, str(exc))] += 1
            continue
        passing.append((order.order_uid, content_hash(order)))
    hashes = stored.hashes_of(sorted({uid for uid, _ in passing}))
    for uid, digest in passing:
        held = hashes.get(uid)
        if held is None:
            stats.would_store += 1
        elif held == digest:
            stats.already_stored += 1
        else:
            stats.still_failing[group_key(DeadLetterReason.CONFLICT)] += 1
            stats.would_conflict += 1
    return stats


@dataclass(frozen=True, slots=True)
class ReplayResult:
    stats: ReplayStats
    lines: tuple[str, ...]  # what was done per letter, as the CLI prints it


def replay_letters(
    letters: Sequence[Letter],
    producer: Producer,
    targets: Targets,
    stored: StoredCheck,
    *,
    dry_run: bool = False,
    max_lines: int = 200,
) -> ReplayResult:
    """Replay exactly these letters (already chosen and capped) with the CLI's replay."""
    out = io.StringIO()
    stats = replay(
        lambda: letters, Selection(), producer, targets, stored, force=False, dry_run=dry_run, out=out
    )
    lines = tuple(out.getvalue().splitlines()[:max_lines])
    return ReplayResult(stats, lines)


def fetch(brokers: str, dlq_topic: str) -> Callable[[Sequence[tuple[int, int]]], list[Letter]]:
    """The letters at dead-letter (partition, offset) places."""
    return lambda places: read_letters_at(brokers, dlq_topic, places)


def resume_service(url: str, token: str, timeout_s: float = 10.0) -> dict[str, object]:
    """Ask a running service to resume after its drift guard paused it: ``POST /dlq/api/resume``
    with the operator token (``l0-dlq resume``). ToolError when it refuses or cannot be reached."""
    if not token:
        raise ToolError("no operator token: set console.operator_token (CONSOLE_OPERATOR_TOKEN) or --token")
    request = urllib.request.Request(  # noqa: S310 - the operator's own service URL, http(s) checked
        url.rstrip("/") + "/dlq/api/resume",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
        data=b"",
    )
    if not url.startswith(("http://", "https://")):
        raise ToolError(f"--url must be http:// or https://, got {url!r}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            body: dict[str, object] = json.loads(answer.read(65536))
            return body
    except urllib.error.HTTPError as exc:
        raise ToolError(
            f"the service refused: HTTP {exc.code} {exc.read(512).decode('utf-8', 'replace')}"
        ) from None
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise ToolError(f"cannot reach the service at {url}: {exc}") from None


class KafkaConsoleActions:
    """The console's actions against the real topic and database (``ConsoleActions``, dlq_console.py).
    Nothing is opened until an action runs; each action opens and closes its own clients, so an idle
    console holds no connection."""

    def __init__(self, brokers: str, dlq_topic: str, policy: ValidationPolicy, dsn: str) -> None:
        self._brokers, self._dlq_topic, self._policy, self._dsn = brokers, dlq_topic, policy, dsn

    def fetch(self, places: Sequence[tuple[int, int]]) -> list[Letter]:
        return read_letters_at(self._brokers, self._dlq_topic, places)

    def revalidate(self, letters: Sequence[Letter]) -> RevalidateStats:
        stored = StoredContent(self._dsn, application_name="l0-console")
        try:
            return revalidate(letters, self._policy, stored)
        finally:
            stored.close()

    def replay(self, letters: Sequence[Letter]) -> ReplayResult:
        producer = open_producer(self._brokers, None)
        stored = StoredContent(self._dsn, application_name="l0-console")
        try:
            return replay_letters(letters, producer, Targets(self._brokers, self._dlq_topic), stored)
        finally:
            stored.close()


def letter_row(letter: Letter, dlq_topic: str, policy: ValidationPolicy) -> LetterRow | None:
    """A letter read from the topic as a row of the read model (``l0-dlq reindex``, for letters
    written before the read model existed); None when it names no origin. The group comes from the
    validator's structured violations when the value still fails the rules, else from the reason and
    the error header (the rule may have changed since)."""
    topic, partition, offset = letter.origin
    if topic is None or partition is None or offset is None:
        return None
    reason = DeadLetterReason(letter.reason) if letter.reason in DeadLetterReason.values() else None
    if reason is None:
        return None
    group = group_key(reason, (), letter.error)
    decodable = (DeadLetterReason.INVALID, DeadLetterReason.UNDECODABLE)
    if reason in decodable and not letter.truncated:
        try:
            decode_order(letter.value, policy, datetime.now(UTC))
        except PermanentError as exc:
            if exc.reason is reason:
                violations = exc.violations if isinstance(exc, InvalidOrder) else ()
                group = group_key(reason, violations, str(exc))
        else:
            if reason is DeadLetterReason.INVALID:  # passes now: the header's first violation
                path, _, message = letter.error.partition("; ")[0].partition(": ")
                group = group_key(reason, [Violation(path, message)])
    try:
        failed_at = datetime.fromisoformat(letter.failed_at.replace("Z", "+00:00"))
    except ValueError:
        failed_at = datetime.now(UTC)
    uid = letter.order_uid or (letter.key.decode("utf-8", "replace") if letter.key else None)
    size = letter.original_size if letter.truncated else len(letter.value or b"")
    return LetterRow(
        origin_topic=topic,
        origin_partition=partition,
        origin_offset=offset,
        dlq_topic=dlq_topic,
        dlq_partition=letter.partition,
        dlq_offset=letter.offset,
        reason=reason.value,
        group_key=group,
        order_uid=uid,
        failed_at=failed_at,
        error=letter.error,
        is_stub=letter.truncated,
        value_bytes=size or 0,
    )
