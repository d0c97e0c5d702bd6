"""The service's configuration: frozen dataclasses, one per section of config.yaml.

Each field declares its default, its meaning (``help``) and its constraint next to it, so the loader,
config.yaml.example and the tests all read one source. The environment variable of ``section.key`` is
``SECTION_KEY`` (``kafka.brokers`` -> ``KAFKA_BROKERS``), the names docker compose's .env uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any

from psycopg import conninfo

from internal.domain.validation import ValidationPolicy

Check = Callable[[Any], str | None]
# The validator's knobs are ValidationPolicy's fields, with its defaults: the domain states them once and
# consumer.* takes them from there (validation_policy() below hands them back).
_POLICY = ValidationPolicy()
MASKED = "********"
# libpq parameters that carry a secret (a DSN's password, a client key's passphrase).
DSN_SECRET_KEYS = frozenset({"password", "sslpassword"})


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def postgres_dsn(v: str) -> str | None:
    try:
        params = conninfo.conninfo_to_dict(v)
    except Exception:  # psycopg raises ProgrammingError; any failure means "malformed"
        # libpq's own message quotes the part it could not read - possibly the password
        # ('invalid percent-encoded token: "s3%zzcret"'), so it is not repeated.
        return "is not a valid PostgreSQL DSN (libpq cannot parse it; quote or percent-encode a password)"
    port = str(params.get("port") or "5432")
    if not all(part.isdigit() and 0 < int(part) < 65536 for part in port.split(",")):
        return f"is not a valid PostgreSQL DSN (port {port!r})"
    return (
        None
        if params.get("dbname") or params.get("host")
        else "is not a valid PostgreSQL DSN (no host/dbname)"
    )


def topic_name(v: str) -> str | None:
    ok = v == "" or (len(v) <= 249 and all(c.isascii() and (c.isalnum() or c in "._-") for c in v))
    return None if ok else "must be a Kafka topic name (letters, digits, '.', '_', '-')"


def masked_dsn(dsn: str) -> str:
    """A DSN with its password (and sslpassword) masked; the rest - host, port, database, user - is
    what an operator needs to see. A DSN libpq cannot parse is masked whole."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        return MASKED
    if not DSN_SECRET_KEYS & set(params):
        return dsn
    shown = {k: (MASKED if k in DSN_SECRET_KEYS else str(v)) for k, v in params.items() if v is not None}
    return conninfo.make_conninfo(**shown)


def dsn_secrets(dsn: str) -> list[str]:
    """The secret values a DSN holds (its password), to be kept out of every line the service writes."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        return []
    return [str(params[k]) for k in sorted(DSN_SECRET_KEYS & set(params)) if params[k]]


@dataclass(frozen=True, slots=True)
class Secret:
    """The marker of a setting that holds a secret: how it may be shown, and which values in it are
    secret. Every printer of settings honours it: ``check-config``, configuration errors, and the
    redaction of every log line (internal/pkg/logging.py)."""

    shown: Callable[[Any], str]
    values: Callable[[Any], list[str]]


SECRET_DSN = Secret(masked_dsn, dsn_secrets)  # a DSN: shown without its password
SECRET_TEXT = Secret(lambda v: MASKED if v else "", lambda v: [v] if v else [])  # a token: never shown


def setting(default: Any, help: str, check: Check | None = None, *, secret: Secret | None = None) -> Any:
    """One setting: its default, its meaning (``help``), its constraint and, for one that holds a
    secret, its ``Secret`` marker."""
    return field(default=default, metadata={"help": help, "check": check, "secret": secret})


def secret_of(item: Field[Any]) -> Secret | None:
    marker = item.metadata.get("secret")
    return marker if isinstance(marker, Secret) else None


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = setting(
        "info", "minimum level: debug, info, warning, error", one_of("debug", "info", "warning", "error")
    )
    format: str = setting(
        "json", "json (one object per line, for machines) or console (for people)", one_of("json", "console")
    )
    access_log: bool = setting(False, "one log line per HTTP request (costs throughput)")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = setting("127.0.0.1", "address the HTTP server binds to (0.0.0.0 in containers)", non_empty)
    port: int = setting(8080, "HTTP port of the UI, API, /metrics and health endpoints", between(1, 65535))
    request_timeout_ms: int = setting(
        2000, "database time budget of one request; over it the answer is 503", at_least(1)
    )
    max_request_line_bytes: int = setting(
        8192,
        "a longer request target (path and query) is refused with 414 before the app runs",
        at_least(256),
    )
    max_headers: int = setting(
        100, "more header fields are refused with 431 before the app runs", at_least(8)
    )
    max_header_bytes: int = setting(
        32768,
        "header fields (names and values) over this many bytes in all are refused with 431 before the app "
        "runs (Go's net/http: 1 MiB, nginx: 8-32 KiB)",
        at_least(1024),
    )


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: str = setting(
        "postgresql://orders:orders@127.0.0.1:5432/orders",
        "libpq connection string or URI",
        postgres_dsn,
        secret=SECRET_DSN,
    )
    pool_min_size: int = setting(2, "connections kept open", at_least(1))
    pool_max_size: int = setting(
        10, "connections at most of the reader pool (recent orders, readiness, warm-up)", at_least(1)
    )
    lookup_pool_size: int = setting(
        2,
        "connections at most for the API's cache-miss look-ups; concurrent misses share queries, so a "
        "few connections serve thousands per second and more split them into smaller, costlier "
        "batches; raise it for a remote database, where each query waits out a network round trip "
        "(docs/performance.md)",
        at_least(1),
    )
    search_pool_size: int = setting(
        2,
        "connections at most for the UI's searches, their own budget: more searches at once queue "
        "for these (within http.request_timeout_ms, else 503) and never hold up look-ups or readiness",
        at_least(1),
    )
    connect_timeout_s: float = setting(5.0, "time to wait for a new connection", at_least(0.1))
    statement_timeout_ms: int = setting(
        10000, "server-side limit of one statement of the writer", at_least(1)
    )
    migrate_on_start: bool = setting(True, "apply pending migrations from sql/ when the service starts")
    application_name: str = setting(
        "l0-orders",
        "how the service's connections are named in pg_stat_activity: <this>-writer, -lookup, -search, "
        "-reader, -probe; give instances that share a database names of their own to tell them apart",
        non_empty,
    )


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    brokers: str = setting("127.0.0.1:9092", "bootstrap servers, comma-separated", non_empty)
    topic: str = setting("orders", "topic the orders arrive on", topic_name)
    dlq_topic: str = setting("", "dead-letter topic; empty means '<topic>.dlq'", topic_name)
    group_id: str = setting(
        "orders-consumer", "consumer group; instances with the same id share the partitions", non_empty
    )
    client_id: str = setting("orders-service", "client id shown in broker logs and metrics", non_empty)
    topic_partitions: int = setting(
        6, "partitions of the orders topic when the service creates it", at_least(1)
    )
    create_topics: bool = setting(True, "create the orders and dead-letter topics at start if missing")
    session_timeout_ms: int = setting(
        10000, "group session timeout: how fast a dead instance's partitions move", at_least(1000)
    )
    auto_offset_reset: str = setting(
        "earliest", "where a new group starts: earliest or latest", one_of("earliest", "latest")
    )
    transactions: bool = setting(
        True,
        "exactly-once dead letters: each commit is one Kafka transaction holding the letters of the "
        "committed work and the group's offsets; false = at-least-once (a crash may repeat a letter), "
        "for brokers that forbid transactions (docs/dlq.md#exactly-once)",
    )
    transactional_id: str = setting(
        "",
        "transactional.id of the dead-letter producer; must be stable per instance and unique among "
        "instances running at once; empty means '<group_id>.<client_id>.<hostname>.<http.port>'",
    )
    transaction_timeout_ms: int = setting(
        30000,
        "transaction.timeout.ms of the dead-letter producer, and the bound of each commit or abort: a "
        "transaction that cannot finish in it is aborted and its partitions are read again",
        at_least(1000),
    )


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    workers: int = setting(
        4, "threads that validate and write batches (one partition is served by one worker)", at_least(1)
    )
    batch_max_messages: int = setting(500, "the most messages a batch holds...", at_least(1))
    batch_max_bytes: int = setting(
        8388608,
        "...and the most bytes (8 MiB; a larger message goes in a batch of its own)",
        at_least(1),
    )
    batch_max_wait_ms: int = setting(
        10,
        "under a backlog, how long an idle worker may wait for a full batch; without one it writes "
        "what it has at once, and what arrives meanwhile makes its next batch",
        at_least(1),
    )
    max_in_flight_messages: int = setting(
        10000, "polled but not yet committed messages before polling pauses", at_least(1)
    )
    max_in_flight_bytes: int = setting(
        134217728,
        "bytes of polled messages waiting or being written before polling pauses (128 MiB)",
        at_least(1),
    )
    max_message_bytes: int = setting(
        _POLICY.max_message_bytes,
        "larger messages are dead-lettered as undecodable without parsing; the dead-letter topic and "
        "its producer are sized from it, so that every letter fits",
        at_least(1),
    )
    cross_field_checks: bool = setting(
        _POLICY.cross_field_checks, "check sums, track numbers, duplicate rids and future dates across fields"
    )
    max_future_skew_seconds: int = setting(
        _POLICY.max_future_skew_seconds,
        "how far date_created may lie in the future (clock skew)",
        at_least(0),
    )
    plausibility_checks: bool = setting(
        _POLICY.plausibility_checks,
        "check that payment.payment_dt is Unix seconds near date_created (the window below); "
        "false accepts any positive payment_dt, e.g. for historic data",
    )
    payment_max_before_s: int = setting(
        _POLICY.payment_max_before_s,
        "payment_dt may lie at most this many seconds before date_created (1 day)",
        at_least(0),
    )
    payment_max_after_s: int = setting(
        _POLICY.payment_max_after_s,
        "payment_dt may lie at most this many seconds after date_created (30 days)",
        at_least(0),
    )
    retry_initial_ms: int = setting(
        100, "first backoff after a transient error (doubles up to retry_max_ms, with jitter)", at_least(1)
    )
    retry_max_ms: int = setting(10000, "longest backoff between retries", at_least(1))
    max_attempts: int = setting(
        3,
        "attempts before an unexpected error splits the batch and dead-letters the failing message "
        "as processing_error, and before a statement timeout splits a batch (one message alone keeps "
        "retrying)",
        at_least(1),
    )
    freshness_objective_ms: int = setting(
        1000,
        "the p99 of consumer_order_freshness_seconds (producer's timestamp to committed and cached) "
        "above which, for 10 minutes, the OrdersNotFresh alert fires",
        at_least(1),
    )
    stuck_after_s: float = setting(
        60.0,
        "a partition with messages waiting whose committed offset did not move for this long is "
        "stuck: readiness fails naming it, consumer_partition_stuck turns 1",
        at_least(1),
    )
    revoke_timeout_s: float = setting(
        10.0, "time in-flight batches get to finish when partitions are revoked", at_least(0)
    )
    drift_window: int = setting(
        500,
        "the drift guard watches the outcomes of this many most recent messages (0 = off); when "
        "drift_ratio of them were dead-lettered, consumption pauses until an operator resumes it "
        "(docs/dlq.md#drift-guard)",
        at_least(0),
    )
    drift_ratio: float = setting(
        0.95,
        "the share of dead letters among the last drift_window messages that pauses consumption",
        between(0.01, 1.0),
    )
    commit_interval_ms: int = setting(
        100,
        "finished work is committed at most this often: one offset commit, or one Kafka transaction "
        "with its dead letters (kafka.transactions); longer means fewer transactions and letters "
        "that become visible later. While work is in flight, slow transactions (a loaded host) are "
        "spaced out further, so that they block the poll thread at most a tenth of the time (the "
        "next one at most 1 s later)",
        at_least(1),
    )

    def validation_policy(self) -> ValidationPolicy:
        """The validator's knobs: each field of ValidationPolicy is the setting of the same name."""
        return ValidationPolicy(**{f.name: getattr(self, f.name) for f in fields(ValidationPolicy)})


@dataclass(frozen=True, slots=True)
class DlqSettings:
    max_consecutive: int = setting(
        0, "stop consuming after this many dead-letters in a row (0 = off)", at_least(0)
    )
    max_error_bytes: int = setting(4096, "the error header is cut to this length", at_least(64))


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    operator_token: str = setting(
        "",
        "token an operator signs in to the dead-letter console (/dlq) with, and l0-dlq resume sends; "
        "empty: the console is read-only",
        secret=SECRET_TEXT,
    )
    max_replay: int = setting(
        1000, "letters one console action (re-validate, replay) works on at most", between(1, 100000)
    )


@dataclass(frozen=True, slots=True)
class CacheSettings:
    max_entries: int = setting(100000, "orders kept in memory at most", at_least(0))
    max_bytes: int = setting(268435456, "bytes of cached JSON at most (256 MiB)", at_least(0))
    max_entry_bytes: int = setting(
        262144, "a larger order is served from the database, never cached", at_least(1)
    )
    warmup_orders: int = setting(10000, "latest orders loaded into the cache at start", at_least(0))
    search_pages_bytes: int = setting(
        16777216,
        "bytes of rendered search result pages kept, each at most 1 s, so that a search asked many "
        "times at once is read once (16 MiB; 0 = none)",
        at_least(0),
    )


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    timeout_s: float = setting(30.0, "a stop (SIGTERM/SIGINT) takes at most this long", at_least(1))


@dataclass(frozen=True, slots=True)
class Settings:
    log: LogSettings = field(default_factory=LogSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    dlq: DlqSettings = field(default_factory=DlqSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)

    @property
    def dlq_topic(self) -> str:
        return self.kafka.dlq_topic or f"{self.kafka.topic}.dlq"
