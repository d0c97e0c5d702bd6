"""Hostile messages: whatever bytes arrive, decoding and validation answer with a reason - never an
unhandled exception - and the batch processor dead-letters them instead of failing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from internal.consumer.control import Control
from internal.consumer.messages import Inbound
from internal.domain.errors import InvalidOrder, UndecodableMessage
from internal.domain.outcomes import Outcome
from internal.domain.validation import ValidationPolicy, decode_order
from tests.unit.test_processor import Harness

CANONICAL_BYTES = (
    (Path(__file__).resolve().parents[1] / "fixtures" / "order-canonical.json").read_bytes().strip()
)
CANONICAL: dict[str, Any] = json.loads(CANONICAL_BYTES)
POLICY = ValidationPolicy()  # 1 MiB: room for 1001 items, so the count rule decides
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ODD_TEXT = st.sampled_from(
    [
        "\x00",
        "\ud800",
        "\udfff",
        "\u200f",
        "\u202e",
        "\u2028",
        "\ufeff",
        "\U0001f69a",
        "\\",
        '"',
        "<script>",
        "é" * 300,
    ]
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decision(raw: bytes | None) -> str:
    """What the decoder decides: 'ok', or the rejection reason once its explanation is checked."""
    explained = True
    try:
        decode_order(raw, POLICY, NOW)
    except UndecodableMessage as exc:
        reason, explained = exc.reason.value, bool(str(exc))
    except InvalidOrder as exc:
        reason = exc.reason.value
        explained = bool(exc.violations) and all(v.path and v.message for v in exc.violations)
    else:
        reason = "ok"
    assert explained, f"a {reason} rejection must say why"
    return reason


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    ODD_TEXT,
    st.text(min_size=300, max_size=2000),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += paths(value, (*prefix, index))
    return found


ALL_PATHS = paths(CANONICAL)


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(doc))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_rejected_with_a_reason(raw: bytes) -> None:
    assert decision(raw) in {"undecodable", "invalid"}


@FUZZ
@given(st.integers(min_value=0, max_value=len(CANONICAL_BYTES) - 1))
def test_every_truncation_of_the_canonical_order_is_undecodable(cut: int) -> None:
    assert decision(CANONICAL_BYTES[:cut]) == "undecodable"


@FUZZ
@given(st.sampled_from(ALL_PATHS), json_value)
def test_a_mutated_canonical_order_never_escapes_the_decision(path: tuple[Any, ...], value: Any) -> None:
    raw = json.dumps(replaced(CANONICAL, path, value), ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert decision(raw) in {"ok", "undecodable", "invalid"}


@FUZZ
@given(st.sampled_from(ALL_PATHS), ODD_TEXT)
def test_odd_unicode_in_any_field_is_decided(path: tuple[Any, ...], text: str) -> None:
    # ensure_ascii=True writes lone surrogates and NUL as \\u escapes: valid JSON, hostile content.
    assert decision(json.dumps(replaced(CANONICAL, path, text)).encode()) in {"ok", "undecodable", "invalid"}


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=5000))
def test_deep_nesting_is_decided(depth: int) -> None:
    assert decision(("[" * depth + "]" * depth).encode()) in {"undecodable", "invalid"}
    nested = '{"order_uid": ' + "[" * depth + "]" * depth + "}"
    assert decision(nested.encode()) in {"undecodable", "invalid"}


def test_huge_arrays_and_strings_are_decided() -> None:
    assert decision(replaced_bytes("items", [CANONICAL["items"][0]] * 1001)) == "invalid"
    assert decision(replaced_bytes("customer_id", "x" * 100_000)) in {"undecodable", "invalid"}
    assert decision(b" " * (POLICY.max_message_bytes + 1)) == "undecodable"


def replaced_bytes(key: str, value: Any) -> bytes:
    return json.dumps(replaced(CANONICAL, (key,), value)).encode()


@FUZZ
@given(
    st.lists(
        st.one_of(st.binary(max_size=512), st.sampled_from(ALL_PATHS).map(str).map(str.encode)), max_size=20
    )
)
def test_the_processor_dead_letters_hostile_batches_without_processing_errors(values: list[bytes]) -> None:
    harness = Harness()
    batch = [Inbound("t", 0, i, None, v, (), None, 1) for i, v in enumerate(values)]
    report = harness.processor.process(batch, Control(lambda: True, lambda _s: None))
    assert Outcome.PROCESSING_ERROR not in report.outcomes  # a processing_error here would be a bug
    assert len(harness.dlq.sent) == sum(1 for o in report.outcomes if o.dead_lettered)
    assert all(letter.error for letter in harness.dlq.sent)
