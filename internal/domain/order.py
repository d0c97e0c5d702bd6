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
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
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
OFFSET_MESSAGE: Final = "must have an offset between -12:00 and +14:00 (the offsets of real time zones)"
INSTANT_MESSAGE: Final = "must be an instant between 0001-01-01 and 9999-12-31 in UTC"
# pydantic alone also takes "2021-11-26 06:22:19Z" and other ISO 8601 spellings; RFC 3339 is the contract.
# Up to 9 fraction digits because Go producers send nanoseconds: the text keeps them all, the instant
# (Python's datetime, PostgreSQL's timestamptz) is truncated to microseconds. The order page shows the
# text by this same pattern (api/formatting.py). Groups: the offset's sign, hours, minutes (None for Z).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
# The text is stored as sent and PostgreSQL reads the instant from it: its timestamptz takes offsets up
# to 15:59 only. Real zones span -12:00..+14:00; anything beyond is a producer bug, refused here.
_MAX_EAST_MINUTES, _MAX_WEST_MINUTES = 14 * 60, 12 * 60
_EDGE_YEARS = frozenset({"0001", "9999"})


def instant(text: str) -> datetime:
    """The aware datetime of a ``date_created`` text the model accepted (microseconds at most)."""
    # fromisoformat wants upper-case T and Z; RFC 3339 allows both cases.
    return datetime.fromisoformat(text.upper())


def _require_rfc3339(value: object) -> str:
    # The text itself is the field (the API serves it as sent, docs/validation.md); this checks that it
    # is RFC 3339 with a zone, a real date and time, an offset of a real zone, and an instant that
    # Python and PostgreSQL both hold.
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 date-time string")
    match = RFC3339.fullmatch(value)
    if match is None:
        raise PydanticCustomError("rfc3339", RFC3339_MESSAGE)
    sign, hours, minutes = match.groups()
    if sign is not None:
        offset = int(hours) * 60 + int(minutes)
        if int(minutes) > 59 or offset > (_MAX_EAST_MINUTES if sign == "+" else _MAX_WEST_MINUTES):
            raise PydanticCustomError("rfc3339_offset", OFFSET_MESSAGE)
    try:
        moment = instant(value)
    except ValueError as exc:  # a day or an hour that does not exist: "day is out of range for month"
        raise PydanticCustomError(
            "datetime_parsing", "must be a valid RFC 3339 date-time ({error})", {"error": str(exc)}
        ) from None
    if value[:4] in _EDGE_YEARS:  # only there can an offset move the instant out of years 1..9999
        try:
            moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
            raise PydanticCustomError("rfc3339_instant", INSTANT_MESSAGE) from None
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
# The text as sent, checked by the validator above; ``Order.created_at`` is its instant.
Rfc3339Text = Annotated[
    str, BeforeValidator(_require_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]


class _Strict(BaseModel):
    # cache_strings=False: pydantic-core otherwise hashes every short string value into a cache of
    # Python strings, which pays off for repeated keys of dicts, not for the fields of a model - the
    # keys here are matched by the schema, and order values (uids, names) rarely repeat.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, cache_strings=False)


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
    date_created: Rfc3339Text
    oof_shard: Digits

    @property
    def created_at(self) -> datetime:
        """``date_created`` as an aware datetime (its instant, with the sender's offset)."""
        return instant(self.date_created)


_ORDER_ADAPTER: Final = TypeAdapter(Order)


def order_to_json_bytes(order: Order) -> bytes:
    """The order as compact JSON in the message's shape and key order, ready to send or cache.

    ``date_created`` is the text as sent (offset, fraction digits and letter case kept): the API
    promises the message's shape, and PostgreSQL keeps that text next to the instant, so an order
    fresh from Kafka and the same order read back from the database have the same bytes (and ETag).
    Decoding the result gives an equal ``Order``.
    """
    return _ORDER_ADAPTER.dump_json(order)


def content_hash(order: Order) -> bytes:
    """SHA-256 (32 bytes) of the order's content, independent of how the message spelt it.

    Taken over ``order_to_json_bytes`` - keys in the model's fixed order, no whitespace - with
    ``date_created`` as its UTC instant (``hash_form``): whitespace, key order and the spelling of
    the instant (``+03:00`` or ``Z``, fraction digits past microseconds) do not matter, any value
    does. Pinned by a unit test: stored hashes were computed so, and a change would make every
    re-delivery of a stored order look like a conflict.
    """
    return json_digest(hash_form(order, order_to_json_bytes(order)))


def hash_form(order: Order, order_json: bytes) -> bytes:
    """``order_json`` (the order's ``order_to_json_bytes``) with ``date_created`` as its UTC instant.

    The common spelling, whole seconds in UTC with ``Z``, is already that form: no copy. Otherwise
    one replacement: ``"date_created":"`` occurs once, as the key - inside a JSON string every ``"``
    is escaped, so the sequence cannot be part of a value.
    """
    sent = order.date_created
    if len(sent) == 20 and sent[19] == "Z" and sent[10] == "T":
        return order_json
    utc = rfc3339_utc(order.created_at)
    if utc == sent:
        return order_json
    return order_json.replace(f'"date_created":"{sent}"'.encode(), f'"date_created":"{utc}"'.encode(), 1)


def json_digest(hashed_form: bytes) -> bytes:
    """The content hash of an order from its ``hash_form`` (see ``content_hash``)."""
    return hashlib.sha256(hashed_form).digest()


def rfc3339_utc(moment: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC with ``Z``: ``2021-11-26T06:22:19Z``, with six fraction
    digits when there are microseconds (``...19.500000Z``) - the form content hashes are taken in."""
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
