"""Turn one Kafka message value into an ``Order`` or into the reason it can never be one.

The consumer needs a verdict per message and, for the dead-letter topic, every reason at once: a producer
team fixing one violation per round trip is what this module exists to prevent. So:

* cheap checks that need no parsing (absent value, size, UTF-8) come first and raise ``UndecodableMessage``;
* one ``Order.model_validate_json`` call parses and checks every field in pydantic-core and collects all
  errors; they are translated here into ``Violation``s with paths like ``items[2].price`` and short messages
  that never echo a text value (dead-letter reasons must not leak names, phones or e-mail addresses);
* a key repeated in one object, at any depth, makes the message invalid (duplicate_keys.py: proved
  absent by a count for most messages, searched exactly otherwise);
* the cross-field rules (sums, track numbers, duplicate rids, clock skew) and the plausibility rules
  (``payment_dt`` near ``date_created``, in seconds) run only on an order whose fields are all valid -
  sums over broken numbers would only add noise - and then all of them are reported.

docs/validation.md is the rule book; the tests break each rule on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from internal.domain.duplicate_keys import cannot_repeat, duplicate_keys
from internal.domain.errors import InvalidOrder, UndecodableMessage, Violation, location
from internal.domain.order import PATTERN_MESSAGES, Order

DAY_S: Final = 86_400
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """The knobs of validation; filled from config keys ``consumer.*`` (see docs/validation.md)."""

    max_message_bytes: int = 1_048_576
    cross_field_checks: bool = True
    max_future_skew_seconds: int = 300
    plausibility_checks: bool = True
    payment_max_before_s: int = DAY_S  # payment_dt at most this long before date_created...
    payment_max_after_s: int = 30 * DAY_S  # ...and at most this long after it

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {self.max_message_bytes}")
        for name in ("max_future_skew_seconds", "payment_max_before_s", "payment_max_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


def decode_order(raw: bytes | None, policy: ValidationPolicy, now: datetime) -> Order:
    """Decode and validate one message value.

    ``now`` is the aware time of receipt (the consumer's clock), against which ``date_created`` is checked.
    Raises ``UndecodableMessage`` when the value is not one UTF-8 JSON document of acceptable size, and
    ``InvalidOrder`` carrying every violation when it is JSON but not a valid order.
    """
    if not raw:
        raise UndecodableMessage("message has no value")
    # Before parsing: the limit exists so that a huge value costs nothing but this comparison.
    if len(raw) > policy.max_message_bytes:
        raise UndecodableMessage(
            f"message is {len(raw)} bytes, more than the limit of {policy.max_message_bytes}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableMessage(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        # The str, not the bytes: the UTF-8 check is done, and pydantic reads a str slightly faster.
        order = Order.model_validate_json(text)
    except ValidationError as exc:
        raise _domain_error(exc, text) from None
    if not cannot_repeat(text, order):
        repeated = duplicate_keys(text)
        if repeated:
            raise InvalidOrder(repeated)
    violations: list[Violation] = []
    created = order.created_at  # parsed once for both kinds of rule
    if policy.cross_field_checks:
        violations += _cross_field_violations(order, created, policy, now)
    if policy.plausibility_checks:
        violations += _plausibility_violations(order, created, policy)
    if violations:
        raise InvalidOrder(violations)
    return order


def _domain_error(exc: ValidationError, text: str) -> UndecodableMessage | InvalidOrder:
    errors = exc.errors(include_url=False)
    for error in errors:
        if error["type"] == "json_invalid":
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            return UndecodableMessage(f"not a JSON document: {detail}")
    # Refused anyway, so the exact search costs nothing that matters; repeated keys come first: the
    # other violations describe whichever value the parser kept.
    violations = [Violation(location(error["loc"]), _message(error), _kind(error)) for error in errors]
    return InvalidOrder([*duplicate_keys(text), *violations])


# What a type error says the field must be; the JSON type of what came instead is added.
_EXPECTED: Final = {
    "int_type": "an integer",
    "string_type": "a string",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "an array",
    "datetime_type": "an RFC 3339 date-time string",
}

# Filled from the error's context; every name used is one pydantic puts there for that error type.
_TEMPLATES: Final = {
    "missing": "missing field",
    "extra_forbidden": "unknown field",
    # Every text with a minimum length has the minimum 1, so "too short" means empty.
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must not be empty",  # items is the only array and needs at least one entry
    "too_long": "must have at most {max_length} entries, got {actual_length}",
    "timezone_aware": "must have a zone (Z or +hh:mm), like 2021-11-26T06:22:19Z",
    "datetime_parsing": "must be a valid RFC 3339 date-time ({error})",
    "datetime_from_date_parsing": "must be a valid RFC 3339 date-time ({error})",
}

# Named as JSON names them, because the sender wrote JSON; the value itself is never shown.
_JSON_TYPES: Final[dict[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "a number with a fraction or exponent",
    str: "string",
    list: "array",
    dict: "object",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {_JSON_TYPES.get(type(error['input']), 'object')}"
    if kind == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(ctx["pattern"], error["msg"])
    template = _TEMPLATES.get(kind)
    # Without a template it is one of our own PydanticCustomErrors (rfc3339, currency), already human.
    return error["msg"] if template is None else template.format_map(ctx)


def _kind(error: ErrorDetails) -> str:
    """The rule an error broke, without what came instead ("got string", "got 12 entries")."""
    kind = error["type"]
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}"
    if kind == "too_long":
        return "must have at most {max_length} entries".format_map(error.get("ctx", {}))
    if kind in ("datetime_parsing", "datetime_from_date_parsing"):
        return "must be a valid RFC 3339 date-time"
    return ""  # the message names the rule


def _cross_field_violations(
    order: Order, created: datetime, policy: ValidationPolicy, now: datetime
) -> list[Violation]:
    if now.utcoffset() is None:
        # A naive clock would make the skew check compare against an unknown zone; that is a caller bug.
        raise ValueError("now must be a timezone-aware datetime")
    violations: list[Violation] = []
    first_index_of_rid: dict[str, int] = {}
    for index, item in enumerate(order.items):
        if item.track_number != order.track_number:
            violations.append(Violation(f"items[{index}].track_number", "must equal track_number"))
        first = first_index_of_rid.setdefault(item.rid, index)
        if first != index:
            violations.append(
                Violation(
                    f"items[{index}].rid", f"duplicate rid, already used by items[{first}]", "duplicate rid"
                )
            )
    payment = order.payment
    items_total = sum(item.total_price for item in order.items)
    if payment.goods_total != items_total:
        message = f"must be the sum of items[].total_price = {items_total}, got {payment.goods_total}"
        violations.append(Violation("payment.goods_total", message, "must be the sum of items[].total_price"))
    expected = payment.goods_total + payment.delivery_cost + payment.custom_fee
    if payment.amount != expected:
        message = f"must be goods_total + delivery_cost + custom_fee = {expected}, got {payment.amount}"
        violations.append(
            Violation("payment.amount", message, "must be goods_total + delivery_cost + custom_fee")
        )
    skew = policy.max_future_skew_seconds
    if created > now + timedelta(seconds=skew):
        violations.append(
            Violation("date_created", f"must not be more than {skew} s after the time of receipt")
        )
    return violations


def _plausibility_violations(order: Order, created: datetime, policy: ValidationPolicy) -> list[Violation]:
    """``payment_dt`` (Unix seconds) within [date_created - before, date_created + after].

    Compared in whole microseconds, so the window's edges are exact whatever the fraction of
    ``date_created``. A value a thousand times too large is named as milliseconds, the usual bug.
    """
    created_us = (created - _EPOCH) // _MICROSECOND
    paid = order.payment.payment_dt
    before, after = policy.payment_max_before_s, policy.payment_max_after_s
    low, high = created_us - before * 1_000_000, created_us + after * 1_000_000
    paid_us = paid * 1_000_000
    if low <= paid_us <= high:
        return []
    if paid_us > high and low <= (paid // 1000) * 1_000_000 <= high:
        message = "must be Unix seconds, not milliseconds (divided by 1000 it would fit date_created)"
    elif paid_us < low:
        message = f"must not be more than {before} s before date_created (Unix seconds)"
    else:
        message = f"must not be more than {after} s after date_created (Unix seconds)"
    return [Violation("payment.payment_dt", message)]
