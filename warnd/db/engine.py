"""Database connection and migrations.

URLs are given plainly (`sqlite:///path.db`, `postgresql://user@host/db`); the async and sync
drivers are chosen here: aiosqlite / sqlite3 for SQLite, psycopg 3 for PostgreSQL (one
driver for both modes).

SQLite runs in WAL mode with synchronous=FULL (an accepted alert survives power loss).
SQLite has one writer, so on SQLite:
- `session()` sessions are writers: they queue on an in-process lock (fair, no busy-handler
  sleeping) and begin with BEGIN IMMEDIATE, so a read-then-write never fails to upgrade;
- `read()` sessions only read: plain deferred BEGIN on a separate engine, which WAL lets run
  beside the writer. Never write through a read() session.
A task that holds the writer lock may open nested read() sessions, never a nested session().
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def json_dumps(value: Any) -> str:
    """JSON columns (event data, recipients) keep Chinese as characters, not \\uXXXX escapes:
    readable in psql and sqlite3, and half the bytes."""
    return json.dumps(value, ensure_ascii=False)


def driver_url(url: str, *, asynchronous: bool) -> str:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return str(u.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite"))
    if backend == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _sqlite_pragmas(engine: Any, durable: bool, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


class Database:
    def __init__(self, url: str, durable: bool = True, pool_size: int = 10, max_overflow: int = 10):
        # durable=False (NORMAL) still survives a process crash, not a power cut: demo only.
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"json_serializer": json_dumps}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(driver_url(url, asynchronous=True), **kwargs)
        self.read_engine = self.engine
        if self.is_sqlite:
            _sqlite_pragmas(self.engine.sync_engine, durable, "BEGIN IMMEDIATE")
            self.read_engine = create_async_engine(driver_url(url, asynchronous=True), json_serializer=json_dumps)
            _sqlite_pragmas(self.read_engine.sync_engine, durable, "BEGIN")
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(self.read_engine, class_=AsyncSession, expire_on_commit=False)
        self._writer = _TaskLock() if self.is_sqlite else None

    def session(self) -> _WriterSession:
        """A session that may write. Use as `async with db.session() as s, s.begin():`."""
        return _WriterSession(self.sessions, self._writer)

    def read(self) -> AsyncSession:
        """A read-only session (concurrent with the writer on SQLite)."""
        return self.read_sessions()

    async def upgrade(self) -> None:
        await asyncio.to_thread(upgrade, self.url)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


class _TaskLock:
    """An asyncio lock the owning task may re-enter (nested writer sessions in one task
    would still wait on SQLite itself; the code keeps to one at a time)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if self._owner is task and task is not None:
            self._depth += 1
            return
        await self._lock.acquire()
        self._owner, self._depth = task, 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


class _WriterSession:
    def __init__(self, factory: async_sessionmaker[AsyncSession], lock: _TaskLock | None):
        self._factory, self._lock = factory, lock
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        if self._lock is not None:
            await self._lock.acquire()
        try:
            self._session = self._factory()
            return await self._session.__aenter__()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            assert self._session is not None
            await self._session.__aexit__(*exc)
        finally:
            if self._lock is not None:
                self._lock.release()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", driver_url(url, asynchronous=False).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads", *, verbose: bool = False) -> None:
    """Bring the schema to `revision` (synchronous; Alembic drives a sync engine). "heads":
    feature branches of the migration graph may each add their own revision off 0001.
    Alembic's INFO lines ("Context impl …", "Running upgrade …") are held back unless
    `verbose`: `warnd serve` migrates on every start and should not chatter."""
    if make_url(url).get_backend_name() == "sqlite":
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    if not verbose:
        alembic_log.setLevel(max(logging.WARNING, level))
    try:
        command.upgrade(alembic_config(url), revision)
    finally:
        alembic_log.setLevel(level)
