"""[database] pool_size / max_overflow reach the PostgreSQL pool: a province's counties share one
server, and each county's process must hold no more connections than it was given."""

from __future__ import annotations

from sqlalchemy import text

from warnd.app import App
from warnd.config import DatabaseCfg, Settings


async def test_the_pool_holds_no_more_connections_than_configured(pg_url: str) -> None:
    app = App.build(Settings(database=DatabaseCfg(url=pg_url, pool_size=2, max_overflow=1)), channels={})
    try:
        pool = app.db.engine.sync_engine.pool
        assert pool.size() == 2  # type: ignore[attr-defined]
        held = [await app.db.engine.connect() for _ in range(3)]  # pool_size + max_overflow
        for c in held:
            await c.execute(text("SELECT 1"))
        # The last one is the overflow; a fourth would wait for one of these to come back.
        assert pool.checkedout() == 3 and pool.overflow() == 1  # type: ignore[attr-defined]
        assert pool._max_overflow == 1  # type: ignore[attr-defined]
        for c in held:
            await c.close()
    finally:
        await app.db.close()
