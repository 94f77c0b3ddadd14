"""Server-sent events for the live pages (the 叫应 board, the alarm bar).

A stream looks at the newest event-log id every `tick` seconds — every state change in warnd
appends an event, from whichever instance made it — and re-renders when it moved, or every
`refresh` seconds anyway (countdowns run out and sources go stale without an event). What it
sends is sent only when it differs from what this client already has.

`?once=1` sends the current state and ends the stream (scripts, tests, curl).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import func
from sqlmodel import select

from warnd.console.render import SITE, security_headers
from warnd.db.engine import Database
from warnd.db.models import Event

Render = Callable[[], Awaitable[list[tuple[str, str]]]]  # -> [(event name, data)]


@dataclass(frozen=True)
class LiveCfg:
    tick: float = 1.0  # seconds between looks at the event log
    refresh: float = 15.0  # re-render at least this often
    keepalive: float = 20.0  # a comment line keeps proxies from closing an idle stream


LIVE = web.AppKey("console_live", LiveCfg)


async def last_event_id(db: Database) -> int:
    async with db.read() as s:
        return int((await s.exec(select(func.max(Event.id)))).one() or 0)


def frame(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


async def stream(request: web.Request, db: Database, render: Render) -> web.StreamResponse:
    cfg = request.app.get(LIVE) or LiveCfg()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    security_headers(resp, request.app[SITE].https)
    await resp.prepare(request)
    await resp.write(b"retry: 3000\n\n")
    sent: dict[str, str] = {}
    seen_id, rendered_at, wrote_at = -1, 0.0, time.monotonic()
    once = request.query.get("once") == "1"
    try:
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            newest = await last_event_id(db)
            if newest != seen_id or time.monotonic() - rendered_at >= cfg.refresh:
                seen_id, rendered_at = newest, time.monotonic()
                for name, data in await render():
                    if sent.get(name) != data:
                        sent[name] = data
                        await resp.write(frame(name, data))
                        wrote_at = time.monotonic()
            if once:
                break
            if time.monotonic() - wrote_at >= cfg.keepalive:
                await resp.write(b": keepalive\n\n")
                wrote_at = time.monotonic()
            await asyncio.sleep(cfg.tick)
    except (ConnectionResetError, ConnectionError):
        pass  # the screen went away
    return resp
