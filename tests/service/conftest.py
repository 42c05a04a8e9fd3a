"""The service store on both of its databases: SQLite (the default) and a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from citygate.servers.postgres import LocalPostgres
from citygate.service.db import make_engine, migrate, sqlite_url

_names = itertools.count()


def fresh_store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store of ``kind``: a SQLite file, or a new database on the session's PostgreSQL."""
    if kind == "sqlite":
        return sqlite_url(tmp_path / "service.db")
    pg: LocalPostgres = request.getfixturevalue("postgres")
    return pg.create_database(f"store_{next(_names)}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_store_url(request.param, request, tmp_path)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    migrate(e)
    yield e
    e.dispose()
