"""The dead-letter tool: list, show and replay the letters of the service's dead-letter topic.

Dead letters are only useful if an operator can see why messages were refused and, once the cause is
fixed, send them back without hand-written consumers. Everything here reads the topic with a throwaway,
never-committing consumer (the service's group is untouched) and stops at the topic's end as of the
start of the run. Replay sends the original key, value and headers, so the service treats a replayed
order exactly as the first delivery: stored if the cause is gone, a duplicate if it was stored since.
docs/dlq.md is the manual; internal/tools/dlq_letters.py reads, internal/tools/dlq_replay.py sends.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
from psycopg_pool import ConnectionPool

from internal.config.cli import add_config_option, settings_for
from internal.config.settings import dsn_secrets
from internal.consumer.letters import H_ERROR
from internal.domain.errors import TransientError
from internal.pkg.logging import redactor
from internal.store.dead_letters import DeadLetterIndex, LetterRow
from internal.store.stored import StoredContent
from internal.tools.dlq_actions import letter_row, resume_service, revalidate
from internal.tools.dlq_display import LINE_WIDTH, VALUE_LINES, printable, shorten, show_bytes, value_lines
from internal.tools.dlq_letters import (
    DLQ_PREFIX,
    REASONS,
    Letter,
    Selection,
    ToolError,
    open_letters,
    read_letter,
)
from internal.tools.dlq_replay import Targets, open_producer, replay

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ERROR_WIDTH = 100
REINDEX_BATCH = 1000  # rows per statement of reindex
# Bounds of what one letter may print, whatever it holds (a forged letter can carry 10,000 headers, a
# 16 MB value or a megabyte of error): a list row stays one line of a few hundred characters; show
# prints at most this many headers and error characters (the value's bounds: dlq_display.py).
CELL_WIDTH = 40
SHOWN_HEADERS = 100
HEADER_WIDTH = 500
ERROR_CHARS = 20_000
LIST_HEADER = (
    f"{'DLQ-OFFSET':>10}  {'REASON':<16}  {'PART':>4}  {'OFFSET':>8}  {'ORDER_UID':<20}  "
    f"{'FAILED-AT':<24}  ERROR"
)


def _list(args: argparse.Namespace) -> int:
    """One line per selected letter, then the count per reason (and how many letters are repeats)."""
    selection = _selection(args)
    counts: Counter[str] = Counter()
    origins: set[tuple[str | None, int | None, int | None]] = set()
    repeats = shown = stubs = 0
    letters = open_letters(args.brokers, args.dlq_topic)  # fails before anything is printed
    print(LIST_HEADER)
    for letter in letters:
        if not selection.matches(letter):
            continue
        counts[letter.reason] += 1
        stubs += letter.truncated
        if None not in letter.origin:
            repeats += letter.origin in origins
            origins.add(letter.origin)
        if args.limit is None or shown < args.limit:
            print(_row(letter))
            shown += 1
    total = counts.total()
    print("--")
    for reason in [*REASONS, *sorted(set(counts) - set(REASONS))]:
        if counts[reason]:
            print(f"{shorten(printable(reason), CELL_WIDTH):<16}  {counts[reason]:>6}")
    print(f"{'total':<16}  {total:>6}  ({total - repeats} distinct original messages)")
    if stubs:
        print(f"{stubs} of them are stub letters ([stub] above): the original did not fit; see l0-dlq show")
    if shown < total:
        print(f"shown {shown} of {total} (--limit {args.limit})")
    return EXIT_OK


def _row(letter: Letter) -> str:
    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    uid = letter.order_uid
    error = printable(letter.error)
    if letter.truncated:
        error = f"[stub of {cell(letter.original_size)} bytes] {error}"

    def text(value: str) -> str:
        return shorten(printable(value), CELL_WIDTH)

    return (
        f"{letter.offset:>10}  {text(letter.reason):<16}  {cell(letter.original_partition):>4}  "
        f"{cell(letter.original_offset):>8}  {text(uid) if uid is not None else '-':<20}  "
        f"{text(letter.failed_at):<24}  {shorten(error, ERROR_WIDTH)}"
    )


def _show(args: argparse.Namespace) -> int:
    """Everything about one letter: headers (dlq.* first), key, the value, the whole error."""
    letter = read_letter(args.brokers, args.dlq_topic, args.offset)
    print(f"letter at offset {letter.offset} of {printable(args.dlq_topic)}")
    if letter.truncated:
        print(*_stub_lines(letter), sep="\n")
    print("headers:")
    ordered = sorted(letter.headers, key=lambda h: not h[0].startswith(DLQ_PREFIX))  # stable: keeps order
    for name, value in ordered[:SHOWN_HEADERS]:
        size = len(value or b"")
        shown = f"({size} bytes, see error below)" if name == H_ERROR else show_bytes(value, HEADER_WIDTH)
        print(f"  {shorten(printable(name), CELL_WIDTH * 2)}: {shown}")
    if len(ordered) > SHOWN_HEADERS:
        hidden = len(ordered) - SHOWN_HEADERS
        print(f"  ... {hidden} more headers ({len(ordered)} in all; the first {SHOWN_HEADERS} shown)")
    print(f"key: {show_bytes(letter.key)}")
    print(*value_lines(letter.value), sep="\n")
    print("error:")
    error = letter.error or "(none)"
    for line in error[:ERROR_CHARS].splitlines()[:VALUE_LINES]:
        print(f"  {shorten(printable(line), LINE_WIDTH)}")
    if len(error) > ERROR_CHARS:
        print(f"  ... ({len(error)} characters, the first {ERROR_CHARS} shown)")
    return EXIT_OK


def _stub_lines(letter: Letter) -> list[str]:
    where = (
        f"{printable(letter.original_topic or '-')} partition {letter.original_partition} "
        f"offset {letter.original_offset}"
    )
    return [
        "STUB LETTER: the full letter did not fit the dead-letter topic "
        f"({printable(letter.truncated_cause) or 'refused'}).",
        f"  The original value was {letter.original_size} bytes, SHA-256 "
        f"{printable(letter.original_sha256 or '-')}; the value below is only its first bytes.",
        f"  The original message is still at {where}, while that topic's retention keeps it;",
        "  a stub cannot be replayed (docs/dlq.md#stub-letters).",
    ]


def _replay(args: argparse.Namespace) -> int:
    """Send the selected letters back; exit 1 when any delivery was not acknowledged."""
    selection = _selection(args)
    if args.to_topic == args.dlq_topic:
        raise ToolError(f"--to-topic {printable(args.to_topic)} is the dead-letter topic: never a target")
    producer = open_producer(args.brokers, args.to_topic)  # checked before reading: fail fast
    with _stored(args.dsn) as stored:
        stats = replay(
            lambda: open_letters(args.brokers, args.dlq_topic),
            selection,
            producer,
            Targets(args.brokers, args.dlq_topic, args.to_topic),
            stored,
            force=args.force,
            dry_run=args.dry_run,
        )
    for failure in stats.failures[:5]:  # the first few tell the cause
        print(f"l0-dlq: delivery failed: {failure}", file=sys.stderr)
    print(stats.summary())
    return EXIT_FAILED if stats.failed else EXIT_OK


def _revalidate(args: argparse.Namespace) -> int:
    """The service's current rules over the selected letters (at most --limit): a dry run."""
    selection = _selection(args)
    chosen = []
    for letter in open_letters(args.brokers, args.dlq_topic):
        if selection.matches(letter):
            chosen.append(letter)
            if len(chosen) >= args.limit:
                break
    with _stored(args.dsn) as stored:
        stats = revalidate(chosen, args.policy, stored)
    print(stats.summary())
    for group, count in stats.still_failing.most_common(20):
        print(f"{count:>8}  {printable(group)}")
    return EXIT_OK


def _reindex(args: argparse.Namespace) -> int:
    """Fill the console's read model from the topic: letters written before it existed (or while it
    was not kept) become rows; those indexed already are left alone (ON CONFLICT DO NOTHING)."""
    read = added = skipped = 0
    try:
        with ConnectionPool(args.dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
            index = DeadLetterIndex(pool)
            batch: list[LetterRow] = []
            for letter in open_letters(args.brokers, args.dlq_topic):
                read += 1
                row = letter_row(letter, args.dlq_topic, args.policy)
                if row is None:
                    skipped += 1
                    continue
                batch.append(row)
                if len(batch) >= REINDEX_BATCH:
                    added += index.record(batch)
                    batch = []
            added += index.record(batch)
    except (TransientError, psycopg.Error) as exc:
        raise ToolError(
            f"the read model could not be written: {redactor(dsn_secrets(args.dsn))(str(exc))}"
        ) from None
    print(f"reindex: read {read} letters, added {added} rows ({read - added - skipped} indexed already, "
          f"{skipped} without an origin or a known reason)")  # fmt: skip
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    answer = resume_service(args.url, args.token)
    print("resumed" if answer.get("resumed") else "the service was not paused; nothing to resume")
    return EXIT_OK


@contextmanager
def _stored(dsn: str) -> Iterator[StoredContent]:
    """The database the service stores into: a letter whose order it holds with the same content is
    not sent again, in this run or any later one; a failed check is one line, without the password."""
    try:
        stored = StoredContent(dsn)
    except TransientError as exc:
        raise ToolError(
            f"cannot check stored orders: {redactor(dsn_secrets(dsn))(str(exc))} (--dsn)"
        ) from None
    try:
        yield stored
    except TransientError as exc:
        raise ToolError(f"the stored-order check failed: {redactor(dsn_secrets(dsn))(str(exc))}") from None
    finally:
        stored.close()


def _selection(args: argparse.Namespace) -> Selection:
    if args.from_offset is not None and args.to_offset is not None and args.from_offset > args.to_offset:
        raise ToolError(f"--from-offset {args.from_offset} is after --to-offset {args.to_offset}")
    return Selection(
        reasons=frozenset(args.reason or ()),
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        partition=args.partition,
        uid=args.uid,
    )


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (naming --help) instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    add_config_option(common)
    common.add_argument("--brokers", help="bootstrap servers (default: the setting kafka.brokers)")
    common.add_argument(
        "--dlq-topic", help="dead-letter topic (default: the setting kafka.dlq_topic, else <kafka.topic>.dlq)"
    )
    filters = _Parser(add_help=False)
    add = filters.add_argument
    add("--reason", action="append", choices=REASONS, help="only this reason (repeatable)")
    add("--from-offset", type=_non_negative, metavar="N", help="only original offsets >= N")
    add("--to-offset", type=_non_negative, metavar="M", help="only original offsets <= M")
    add("--partition", type=_non_negative, metavar="P", help="only letters from original partition P")
    add("--uid", metavar="U", help="only letters whose value has order_uid U")

    parser = _Parser(
        prog="l0-dlq",
        allow_abbrev=False,
        description="Inspect and replay the dead-letter topic of the L0 order service (docs/dlq.md).",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{list,show,replay,revalidate,resume,reindex}"
    )
    listing = commands.add_parser(
        "list", parents=[common, filters], allow_abbrev=False, help="one line per letter, totals per reason"
    )
    listing.add_argument("--limit", type=_positive, metavar="N", help="print at most N letters")
    listing.set_defaults(run=_list)
    show = commands.add_parser(
        "show", parents=[common], allow_abbrev=False, help="everything about one letter"
    )
    show.add_argument(
        "offset", type=_non_negative, metavar="DLQ_OFFSET", help="offset in the dead-letter topic"
    )
    show.set_defaults(run=_show)
    again = commands.add_parser(
        "replay", parents=[common, filters], allow_abbrev=False, help="send letters back to the orders topic"
    )
    again.add_argument(
        "--to-topic", help="send here instead of each letter's original topic (needs --force when it differs)"
    )
    again.add_argument(
        "--dsn", help="PostgreSQL of the service, to skip stored orders (default: the setting postgres.dsn)"
    )
    again.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    again.add_argument(
        "--force",
        action="store_true",
        help="send conflict letters too, and to a --to-topic that is not their origin (docs/dlq.md)",
    )
    again.set_defaults(run=_replay, to_topic=None, dsn=None)
    check = commands.add_parser(
        "revalidate",
        parents=[common, filters],
        allow_abbrev=False,
        help="the service's current rules over letters: how many would be stored now (a dry run)",
    )
    check.add_argument("--limit", type=_positive, default=10_000, metavar="N", help="at most N letters")
    check.add_argument("--dsn", help="PostgreSQL of the service (default: the setting postgres.dsn)")
    check.set_defaults(run=_revalidate, dsn=None)
    resume = commands.add_parser(
        "resume",
        parents=[common],
        allow_abbrev=False,
        help="resume a service its drift guard paused (POST /dlq/api/resume with the operator token)",
    )
    resume.add_argument("--url", default=None, help="the service (default: http://<http.host>:<http.port>)")
    resume.add_argument("--token", default=None, help="operator token (default: console.operator_token)")
    resume.set_defaults(run=_resume)
    reindex = commands.add_parser(
        "reindex",
        parents=[common],
        allow_abbrev=False,
        help="fill the console's read model from the topic (letters written before it existed)",
    )
    reindex.add_argument("--dsn", help="PostgreSQL of the service (default: the setting postgres.dsn)")
    reindex.set_defaults(run=_reindex, dsn=None)
    return parser


def _fill_defaults(args: argparse.Namespace) -> None:
    """Take what the command line left open from the service's settings (internal/config/cli.py)."""
    settings = settings_for(args)
    args.brokers = args.brokers or settings.kafka.brokers
    args.dlq_topic = args.dlq_topic or settings.dlq_topic
    if args.command in ("replay", "revalidate", "reindex"):
        args.dsn = args.dsn or settings.postgres.dsn
    if args.command in ("revalidate", "reindex"):
        args.policy = settings.consumer.validation_policy()
    if args.command == "resume":
        host = "127.0.0.1" if settings.http.host in ("0.0.0.0", "::") else settings.http.host  # noqa: S104
        args.url = args.url or f"http://{host}:{settings.http.port}"
        args.token = args.token or settings.console.operator_token


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 with argparse's one-line error
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        _fill_defaults(args)
        return run(args)
    except ToolError as exc:
        print(f"l0-dlq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("l0-dlq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`l0-dlq list | head`): not a failure; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
