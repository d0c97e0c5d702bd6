"""Schema migrations with yoyo-migrations, read from the project's ``sql/`` directory.

yoyo keeps its bookkeeping tables in the connection's current schema, so a DSN whose ``options`` set
a ``search_path`` migrates that schema - the tests rely on it to give every test a clean schema.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from internal.pkg.paths import migrations_dir


def yoyo_uri(dsn: str) -> str:
    """Turn a libpq DSN (key=value or URI) into the URI form yoyo wants, keeping every parameter."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else (f"{user}@" if user else "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = quote(params.pop("dbname", ""), safe="")
    netloc = f"{auth}{host}{':' + port if port else ''}"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql+psycopg://{netloc}/{dbname}{query}"


def apply_pending(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply every migration not applied yet (under yoyo's lock); return the ids applied."""
    backend = get_backend(yoyo_uri(dsn))
    migrations = read_migrations(str(directory or migrations_dir()))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def rollback(dsn: str, count: int | None = None, directory: Path | None = None) -> list[str]:
    """Roll back the latest ``count`` applied migrations (all when None); return the ids rolled back."""
    backend = get_backend(yoyo_uri(dsn))
    migrations = read_migrations(str(directory or migrations_dir()))
    with backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied[:count] if count is not None else applied
        backend.rollback_migrations(chosen)
    return [m.id for m in chosen]


def pending_ids(dsn: str, directory: Path | None = None) -> list[str]:
    backend = get_backend(yoyo_uri(dsn))
    return [m.id for m in backend.to_apply(read_migrations(str(directory or migrations_dir())))]
