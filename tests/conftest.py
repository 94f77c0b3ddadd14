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


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A freshly migrated SQLite database of this test's own (copied from the session's template)."""
    db = tmp_path / "warnd.db"
    db.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{db}"


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


# A test that hangs prints where every asyncio task is waiting (faulthandler only shows
# threads, and an event loop idling in select() says nothing about which await is stuck).
# The watch covers a test's setup, call and teardown (a hung fixture teardown too).
HANG_DUMP_SECONDS = float(os.environ.get("WARND_TEST_HANG_DUMP", "120"))
_running: dict[str, object] = {"id": None, "since": 0.0, "dumped": None}


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    import time

    _running.update(id=nodeid, since=time.monotonic())


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _running.update(id=None)


def pytest_sessionstart(session: pytest.Session) -> None:
    import asyncio
    import gc
    import threading
    import time

    # pytest captures file descriptor 2 while a test runs: write to the terminal's own copy.
    out = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")

    def dump(nodeid: str) -> None:
        print(f"\n--- {nodeid}: still running after {HANG_DUMP_SECONDS:g} s; asyncio tasks:", file=out)
        for task in asyncio.all_tasks():
            task.print_stack(limit=15, file=out)
        out.flush()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            nodeid, since = _running["id"], _running["since"]
            if nodeid is None or _running["dumped"] == nodeid or time.monotonic() - float(since) < HANG_DUMP_SECONDS:  # type: ignore[arg-type]
                continue
            _running["dumped"] = nodeid
            for obj in gc.get_objects():
                try:  # some objects (lazy proxies) raise on a type check
                    found = type(obj) is not type and isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running()
                except Exception:
                    continue
                if found:
                    obj.call_soon_threadsafe(dump, str(nodeid))

    threading.Thread(target=watch, daemon=True, name="hang-watch").start()
