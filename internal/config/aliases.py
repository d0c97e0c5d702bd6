"""The original Go service's names, accepted here: its environment variables and its config.yaml keys.

Users come with the original's README in their heads (and its .env and config.yaml on disk). Its
environment names are aliases of ours, defined once in ``ENV_ALIASES`` and ``DSN_PARTS``; the loader,
config.yaml.example, README and the tests read these tables. Rules:

* an alias fills our variable when ours is not set; an alias set to the empty string counts as not set
  (the original read its environment that way);
* an alias and our variable that are both set and disagree stop the start naming both;
* ``POSTGRES_HOST/PORT/USER/PASSWORD/DB`` replace those parts of ``postgres.dsn`` (from config.yaml or
  the default) when ``POSTGRES_DSN`` is not set; when it is, each part that is set must agree with it.

The original's config.yaml keys are not read (their meaning differs in places); each one found gets a
hint naming our key (``ORIGINAL_KEYS``), printed by the service before it exits with code 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import conninfo


class AliasConflict(ValueError):
    """Two names for one setting, set to different values; ``ours`` is our variable of the two."""

    def __init__(self, ours: str, message: str) -> None:
        super().__init__(message)
        self.ours = ours


@dataclass(frozen=True, slots=True)
class Alias:
    original: str  # the original's variable
    ours: str  # the variable of ours it stands for


ENV_ALIASES = (
    Alias("HTTP_SERVER_PORT", "HTTP_PORT"),
    Alias("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
    Alias("KAFKA_CONSUMER_GROUP_ID", "KAFKA_GROUP_ID"),
    Alias("CONSUMER_TOPIC", "KAFKA_TOPIC"),
)
DSN_VARIABLE = "POSTGRES_DSN"
# The original's variable -> the libpq keyword of postgres.dsn it sets.
DSN_PARTS = {
    "POSTGRES_HOST": "host",
    "POSTGRES_PORT": "port",
    "POSTGRES_USER": "user",
    "POSTGRES_PASSWORD": "password",
    "POSTGRES_DB": "dbname",
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The environment in our names, and where each value filled in from an alias came from."""

    environ: Mapping[str, str]
    sources: Mapping[str, str]  # our variable -> the alias that set it
    # The original's variable -> its value, for the parts of postgres.dsn when POSTGRES_DSN is unset.
    dsn_parts: Mapping[str, str]

    def source(self, ours: str) -> str:
        return self.sources.get(ours, ours)


def resolve(environ: Mapping[str, str]) -> Resolved:
    """Map the original's variables onto ours; raises AliasConflict naming both on a disagreement."""
    env = dict(environ)
    sources: dict[str, str] = {}
    for alias in ENV_ALIASES:
        value = environ.get(alias.original, "")
        if not value.strip():
            continue
        if alias.ours in environ:
            if environ[alias.ours].strip() != value.strip():
                raise AliasConflict(
                    alias.ours, _conflict(alias.ours, alias.original, repr(environ[alias.ours]), value)
                )
            continue
        env[alias.ours] = value
        sources[alias.ours] = alias.original
    parts = {name: environ[name] for name in DSN_PARTS if environ.get(name, "").strip()}
    if parts and DSN_VARIABLE in environ:
        _check_against_dsn(environ[DSN_VARIABLE], parts)
        parts = {}
    return Resolved(env, sources, parts)


def with_parts(dsn: str, parts: Mapping[str, str]) -> str:
    """``dsn`` with the parts the original's variables give replaced (the loader then validates it)."""
    port = parts.get("POSTGRES_PORT", "1").strip()
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"POSTGRES_PORT must be a port number (1-65535), got {parts['POSTGRES_PORT']!r}")
    return conninfo.make_conninfo(dsn, **{DSN_PARTS[name]: value.strip() for name, value in parts.items()})


def _check_against_dsn(dsn: str, parts: Mapping[str, str]) -> None:
    try:
        given = conninfo.conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN is reported by its own check, naming postgres.dsn
        return
    defaults = {"host": "localhost", "port": "5432"}  # libpq's, for a DSN that leaves them out
    for name, value in parts.items():
        key = DSN_PARTS[name]
        theirs = str(given.get(key) or defaults.get(key, ""))
        if theirs != value.strip():
            secret = key == "password"  # never echoed
            shown = "another password" if secret else f"{key} {theirs!r}"
            message = _conflict(DSN_VARIABLE, name, shown, "***" if secret else value)
            raise AliasConflict(DSN_VARIABLE, message)


def _conflict(ours: str, original: str, our_value: str, their_value: str) -> str:
    return (
        f"{original} (the original service's name) and {ours} are both set and disagree: {ours} has "
        f"{our_value}, {original}={their_value!r}; unset one of them"
    )


# The original's config.yaml (its README names the sections http_server, database, kafka, health,
# consumer and cache) -> what to write here instead: our key, or None and why there is none.
# "section.*" covers the keys of a section that are not listed one by one.
ORIGINAL_KEYS: dict[str, tuple[str | None, str]] = {
    "http_server.port": ("http.port", "env HTTP_PORT"),
    "http_server.*": (None, "http.request_timeout_ms bounds a request; the other timeouts are uvicorn's"),
    "database.host": ("postgres.dsn", "its host; or env POSTGRES_HOST"),
    "database.port": ("postgres.dsn", "its port; or env POSTGRES_PORT"),
    "database.user": ("postgres.dsn", "its user; or env POSTGRES_USER"),
    "database.password": ("postgres.dsn", "its password; or env POSTGRES_PASSWORD"),
    "database.dbname": ("postgres.dsn", "its dbname; or env POSTGRES_DB"),
    "database.sslmode": ("postgres.dsn", "e.g. postgresql://u:p@host/db?sslmode=require"),
    "database.*": (None, "pools: postgres.pool_min_size, postgres.pool_max_size, postgres.connect_timeout_s"),
    "kafka.bootstrap_servers": ("kafka.brokers", "env KAFKA_BROKERS"),
    "kafka.consumer_group_id": ("kafka.group_id", "env KAFKA_GROUP_ID"),
    "kafka.session_timeout": ("kafka.session_timeout_ms", "milliseconds; env KAFKA_SESSION_TIMEOUT_MS"),
    "kafka.enable_auto_commit": (None, "offsets are committed only after a batch is stored or dead-lettered"),
    "kafka.*": (None, "the kafka.* and consumer.batch_* keys of config.yaml.example"),
    "health.*": (None, "readiness probes the database about once a second, see /readyz"),
    "consumer.worker_count": ("consumer.workers", "env CONSUMER_WORKERS"),
    "consumer.job_buffer_size": ("consumer.max_in_flight_messages", "env CONSUMER_MAX_IN_FLIGHT_MESSAGES"),
    "consumer.max_retries": ("consumer.max_attempts", "env CONSUMER_MAX_ATTEMPTS"),
    "consumer.*": (None, "consumer.retry_initial_ms, consumer.retry_max_ms, consumer.max_attempts"),
    "cache.capacity": ("cache.max_entries", "env CACHE_MAX_ENTRIES"),
    "cache.*": (None, "cache.max_entries, cache.max_bytes"),
}


def hint_for(key: str) -> str | None:
    """One line saying what ``key`` of the original's config.yaml is here; None if it is not one."""
    section = key.split(".", 1)[0]
    found = ORIGINAL_KEYS.get(key) or ORIGINAL_KEYS.get(f"{section}.*")
    if found is None:
        return None
    ours, note = found
    if ours is None:
        return f"{key} is the original service's; no key here does the same ({note})"
    return f"{key} is the original service's; here it is {ours} ({note})"
