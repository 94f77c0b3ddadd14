"""Shared fixtures.

`db` runs a test on both SQLite and the real PostgreSQL server. PostgreSQL tests clone a
database from a template migrated once per session (CREATE DATABASE ... TEMPLATE), so each
test starts from a clean, fully migrated schema in milliseconds. PostgreSQL must be
reachable (./run test starts it); it is never skipped silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from warnd.db.engine import Database, upgrade

PG_ADMIN = os.environ.get("WARND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_exec(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"warnd_tpl_{os.getpid()}"
    _pg_exec(f'DROP DATABASE IF EXISTS "{name}"')
    _pg_exec(f'CREATE DATABASE "{name}"')
    upgrade(_pg_url(name))
    yield name
    _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def fresh_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        tpl: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "warnd.db"
        path.write_bytes(tpl.read_bytes())
        yield f"sqlite:///{path}"
    else:
        tpl_name: str = request.getfixturevalue("pg_template")
        name = f"warnd_t_{uuid.uuid4().hex[:12]}"
        _pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{tpl_name}"')
        try:
            yield _pg_url(name)
        finally:
            _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a freshly migrated, empty database; the test runs once per backend."""
    yield from fresh_db_url(request.param, request, tmp_path)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a freshly migrated, empty PostgreSQL database (PostgreSQL-only tests)."""
    yield from fresh_db_url("postgres", request, tmp_path)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.close()
