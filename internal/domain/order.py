"""The L0 order as the service holds it: one strict, frozen pydantic model per JSON object of the message.

Every per-field rule lives in the field's type (``Annotated`` constraints), so a single
``Order.model_validate_json`` call - parsing and checking in pydantic-core's Rust - sees the whole message
and reports every broken rule with its location. ``validation.py`` only turns those errors into
``Violation``s and adds the rules that relate fields to each other. docs/validation.md lists every rule.

* ``strict=True``: the producer is a program, so "12" for 12, 1.0 or true for 1, or a number for a string
  is a bug upstream that must be seen, not quietly converted.
* ``extra="forbid"``: a renamed or misspelt key is reported instead of silently dropped.
* ``frozen=True``: an order is a fact once decoded; one object feeds the store, the cache and the hash.

Text rules exist for PostgreSQL as much as for the data: ``text`` columns refuse NUL (U+0000), so it and the
other C0 control characters are rejected here, where the message can still be dead-lettered as invalid,
instead of failing the database batch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
)
from pydantic_core import PydanticCustomError

from internal.domain.currencies import ACTIVE_CURRENCIES

BIGINT_MAX: Final = 2**63 - 1
INTEGER_MAX: Final = 2**31 - 1
MAX_ITEMS: Final = 1000

# Patterns run in pydantic-core's Rust regex engine with search semantics, hence the explicit anchors.
# [0-9] rather than \d: \d would also accept non-ASCII digits such as "١٢".
NO_CONTROL_PATTERN: Final = r"^[^\x00-\x1f]*$"
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9]+$"
PHONE_PATTERN: Final = r"^\+[1-9][0-9]{7,14}$"
EMAIL_PATTERN: Final = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
DIGITS_PATTERN: Final = r"^[0-9]{1,16}$"
# BCP 47 language, then optional script, region and variant subtags (RFC 5646 section 2.1, without the
# extension and private-use forms, which no producer sends).
LOCALE_PATTERN: Final = (
    r"^[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$"
)

# pydantic reports a pattern mismatch with the raw pattern; these are what a person reads instead.
PATTERN_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {
        NO_CONTROL_PATTERN: "must not contain NUL or other control characters (U+0000..U+001F)",
        IDENTIFIER_PATTERN: "must be ASCII letters and digits only",
        PHONE_PATTERN: "must be E.164 like +9720000000",
        EMAIL_PATTERN: "must be an e-mail address like name@example.com",
        DIGITS_PATTERN: "must be 1 to 16 digits",
        LOCALE_PATTERN: "must be a BCP 47 language tag like en, ru or en-US",
    }
)

RFC3339_MESSAGE: Final = "must be an RFC 3339 date-time with a zone, like 2021-11-26T06:22:19Z"
# pydantic alone also takes "2021-11-26 06:22:19Z" and other ISO 8601 spellings; RFC 3339 is the contract.
# Up to 9 fraction digits because Go producers send nanoseconds; they are truncated to microseconds, which
# is also all PostgreSQL keeps.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _require_rfc3339(value: object) -> object:
    # The datetime validator below runs lax (a value handed on by a Python validator is Python input, which
    # strict mode would refuse as a string), and lax would read a number as a Unix time: so strictness is
    # enforced here. datetime objects come from Python callers such as the store, never from a message.
    if isinstance(value, str):
        if _RFC3339.fullmatch(value) is None:
            raise PydanticCustomError("rfc3339", RFC3339_MESSAGE)
    elif not isinstance(value, datetime):
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 date-time string")
    return value


def _require_active_currency(value: str) -> str:
    if value not in ACTIVE_CURRENCIES:
        raise PydanticCustomError("currency", "must be an active ISO 4217 currency code like USD")
    return value


def _text(max_length: int, *, min_length: int = 1, pattern: str = NO_CONTROL_PATTERN) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


Identifier = Annotated[str, _text(64, pattern=IDENTIFIER_PATTERN)]
Text = Annotated[str, _text(255)]
LongText = Annotated[str, _text(512)]
MaybeEmptyText = Annotated[str, _text(255, min_length=0)]
Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]
Digits = Annotated[str, StringConstraints(pattern=DIGITS_PATTERN)]
# 35 characters: the buffer RFC 5646 section 4.4.1 says every tag of this shape fits into.
Locale = Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)]
Currency = Annotated[str, AfterValidator(_require_active_currency)]
PositiveBigInt = Annotated[int, Field(gt=0, le=BIGINT_MAX)]
NonNegativeBigInt = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Percent = Annotated[int, Field(ge=0, le=100)]
# items.status is an INTEGER column (sql/0001_orders_schema.sql), unlike the BIGINT ids and amounts: a bigger
# value is invalid here rather than a database error later.
Status = Annotated[int, Field(ge=0, le=INTEGER_MAX)]
Rfc3339Datetime = Annotated[AwareDatetime, Strict(False), BeforeValidator(_require_rfc3339)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# Field order is the message's key order: order_to_json_bytes relies on it.
class Delivery(_Strict):
    name: Text
    phone: Phone
    zip: Digits
    city: Text
    address: LongText
    region: Text
    email: Email


class Payment(_Strict):
    transaction: Identifier
    request_id: MaybeEmptyText
    currency: Currency
    provider: Text
    amount: NonNegativeBigInt
    payment_dt: PositiveBigInt
    bank: Text
    delivery_cost: NonNegativeBigInt
    goods_total: PositiveBigInt
    custom_fee: NonNegativeBigInt


class Item(_Strict):
    chrt_id: PositiveBigInt
    track_number: Text
    price: NonNegativeBigInt
    rid: Identifier
    name: Text
    sale: Percent
    size: Text
    total_price: NonNegativeBigInt
    nm_id: PositiveBigInt
    brand: Text
    status: Status


class Order(_Strict):
    order_uid: Identifier
    track_number: Identifier
    entry: Text
    delivery: Delivery
    payment: Payment
    # A list, not a tuple: pydantic's tuple validator counts only the entries that validated when it checks
    # the length, which reports a bogus "too short" next to broken entries and misses "too long" entirely.
    # The list validator rejects an over-long array before validating any entry.
    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]
    locale: Locale
    internal_signature: MaybeEmptyText
    customer_id: Text
    delivery_service: Text
    shardkey: Digits
    sm_id: PositiveBigInt
    date_created: Rfc3339Datetime
    oof_shard: Digits


_ORDER_ADAPTER: Final = TypeAdapter(Order)


def order_to_json_bytes(order: Order) -> bytes:
    """The order as compact JSON in the message's shape and key order, ready to send or cache.

    ``date_created`` is written in RFC 3339 in UTC (``Z``), whatever offset the message used: PostgreSQL
    keeps the instant, not the offset, so this is the only form in which an order fresh from Kafka and
    the same order read back from the database have the same bytes (and so the same ETag). Fractions
    of a second appear only when present. Decoding the result gives an equal ``Order``.
    """
    if order.date_created.utcoffset():
        order = order.model_copy(update={"date_created": order.date_created.astimezone(UTC)})
    return _ORDER_ADAPTER.dump_json(order)


def content_hash(order: Order) -> bytes:
    """SHA-256 (32 bytes) of the order's content, independent of how the message spelt it.

    ``order_to_json_bytes`` is already a canonical form - keys in the model's fixed order, no whitespace,
    ``date_created`` as the UTC instant (PostgreSQL's ``timestamptz`` keeps the instant, not the offset, so
    an order read back from the database hashes like the message it was stored from) - so the hash is
    taken over those bytes: whitespace and key order of the message do not matter, any value does. The
    consumer computes the bytes anyway; hashing them costs ~1 us where a separate sorted dump cost ~13.
    """
    return json_digest(order_to_json_bytes(order))


def json_digest(order_json: bytes) -> bytes:
    """The content hash of an order from its ``order_to_json_bytes`` form (see ``content_hash``)."""
    return hashlib.sha256(order_json).digest()


def rfc3339_utc(moment: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC with ``Z``, e.g. ``2021-11-26T06:22:19Z``."""
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
