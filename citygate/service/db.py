"""The service store's database: an engine for its URL and the migrations that bring it up to date.

SQLite (a file beside the cloud's state; the default, for the demo and small cities) or
PostgreSQL (``postgresql+psycopg://...``, production). Both are migrated by Alembic
(:mod:`citygate.service.migrations`) in place: :func:`migrate` at start-up is a no-op on a
store that is current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event

from citygate.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_MS = 10_000  # writers wait their turn instead of failing with "database is locked"


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    # JSON columns (history data, events, the evaluator's state) through orjson: the stdlib
    # json module was a fifth of the evaluator's time (bench/RESULTS.md, the service layer).
    json_args: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000}, **json_args)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a committed transition survives power loss
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=pool_size, pool_pre_ping=True, **json_args)
    raise ConfigError(
        f"service store URL {url.split(':', 1)[0]!r}: expected sqlite:/// or postgresql+psycopg://"
    )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the store to ``revision`` (default: the newest), in place."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the store back to ``revision`` (to run an older citygate on it), in place."""
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(create_engine("sqlite://"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
