"""GET /metrics: the Prometheus exposition of warnd/views/metrics.py.

Protected as the API is (permission "metrics.read": a `[metrics]` scraper token, or an admin's
or auditor's own token or session). Scrapes closer together than `[metrics] cache_seconds`
share one snapshot, so several scrapers (or a hostile client with a token) cannot multiply the
counting queries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from warnd.app import App
from warnd.views.metrics import scrape_timing, snapshot


@dataclass
class MetricsEndpoint:
    app: App
    cache_seconds: float
    _body: bytes = b""
    _at: float = float("-inf")
    _lock: asyncio.Lock | None = None

    async def body(self) -> bytes:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one snapshot at a time; the others wait and share it
            if time.monotonic() - self._at >= self.cache_seconds or not self._body:
                started = time.monotonic()
                app = self.app
                stale = app.settings.speakers.stale_after_seconds if app.speakers is not None else None
                snap = await snapshot(app.db, app.clock.now(), app.runner.stats, county=app.settings.county.code,
                                      speakers_stale_after=stale)
                snap.families.append(scrape_timing(time.monotonic() - started))
                self._body, self._at = snap.render(), time.monotonic()
            return self._body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.body()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_route(app: App) -> web.RouteDef:
    return web.get("/metrics", MetricsEndpoint(app, app.settings.metrics.cache_seconds).handle)
