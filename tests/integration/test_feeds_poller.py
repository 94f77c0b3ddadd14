"""A CAP Atom/RSS feed served by a local aiohttp server with ETag / Last-Modified: 304s,
changed entries, failures with backoff, restarts that must not re-send anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from support.feeds_support import CMA, T0, V1, V2, cap, stack
from warnd.clock import ManualClock
from warnd.db.models import Alert, Delivery
from warnd.feeds.poller import FeedError, parse_feed


@dataclass
class FeedServer:
    """Serves /feed.atom (or /feed.rss) listing `entries`, and each CAP document."""

    docs: dict[str, bytes] = field(default_factory=dict)  # path → CAP
    entries: list[tuple[str, str, datetime]] = field(default_factory=list)  # (id, path, updated)
    version: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    conditional: list[tuple[str | None, str | None]] = field(default_factory=list)
    fail: int = 0  # next N feed requests answer 503
    rss: bool = False
    inline: bool = False
    runner: web.AppRunner | None = None
    url: str = ""

    def add(self, entry_id: str, doc: bytes, updated: datetime) -> None:
        path = f"/cap/{entry_id}.xml"
        self.docs[path] = doc
        self.entries = [e for e in self.entries if e[0] != entry_id] + [(entry_id, path, updated)]
        self.version += 1

    @property
    def etag(self) -> str:
        return f'"v{self.version}"'

    def body(self) -> bytes:
        if self.rss:
            items = "".join(
                f"<item><title>{i}</title><link>{self.url}{p}</link><guid>{i}</guid>"
                f"<pubDate>{u.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
                for i, p, u in reversed(self.entries))
            return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
        parts = []
        for i, p, u in reversed(self.entries):  # newest first, as feeds do
            content = ""
            if self.inline:
                content = '<content type="application/cap+xml">' + self.docs[p].decode().split("?>", 1)[1] + "</content>"
            parts.append(f'<entry><id>{i}</id><title>{i}</title><updated>{u.isoformat()}</updated>'
                         f'<link rel="alternate" type="application/cap+xml" href="{self.url}{p}"/>{content}</entry>')
        return ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
                f'<id>urn:test</id><title>hydro</title><updated>{T0.isoformat()}</updated>'
                + "".join(parts) + "</feed>").encode()

    async def feed(self, request: web.Request) -> web.StreamResponse:
        self.hits["feed"] = self.hits.get("feed", 0) + 1
        self.conditional.append((request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")))
        if self.fail:
            self.fail -= 1
            return web.Response(status=503, text="busy")
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(body=self.body(), content_type="application/atom+xml",
                            headers={"ETag": self.etag, "Last-Modified": f"v{self.version}"})

    async def doc(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if request.path not in self.docs:
            return web.Response(status=404)
        return web.Response(body=self.docs[request.path], content_type="application/cap+xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/feed", self.feed)
        app.router.add_get("/cap/{name}", self.doc)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def doc_hits(self) -> int:
        return sum(v for k, v in self.hits.items() if k.startswith("/cap/"))


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    s = FeedServer()
    await s.start()
    yield s
    await s.stop()


def sources(url: str) -> str:
    return f"""
[sources.hydro]
kind = "cap_poll"
url = "{url}/feed"
interval_seconds = 60
max_backoff_seconds = 600
senders = ["{CMA}"]
"""


async def test_poll_etag_changed_entries_and_restart(db_url: str, tmp_path: Path, server: FeedServer) -> None:
    clock = ManualClock(T0)
    server.add("a1", cap("A-1", onset=T0 + timedelta(hours=4), geocodes=(V1,)), T0)
    async with stack(db_url, tmp_path, sources=sources(server.url), clock=clock) as st:
        feeds = st.engine.feeds
        assert feeds is not None
        src = feeds.sources.by_name["hydro"]
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "ok" and len(r.ingested) == 1 and server.doc_hits() == 1
        assert server.conditional[-1] == (None, None)

        # Unchanged feed: a conditional request, a 304, nothing fetched or sent.
        await clock.advance(60)
        r = await feeds.poller.poll(src)
        assert r.status == "not_modified" and server.conditional[-1] == ('"v1"', "v1")
        assert server.doc_hits() == 1

        # A new entry (an Update widening the area) and the old one still listed: only the
        # new one is fetched.
        await clock.advance(60)
        server.add("a2", cap("A-2", sent=T0 + timedelta(minutes=2), msg_type="Update",
                             references=[("A-1", T0)], onset=T0 + timedelta(hours=4), geocodes=(V1, V2)),
                   T0 + timedelta(minutes=2))
        r = await feeds.poller.poll(src)
        assert r.status == "ok" and len(r.ingested) == 1 and r.already_seen == 1
        assert server.hits["/cap/a2.xml"] == 1 and server.hits["/cap/a1.xml"] == 1

        # A changed entry (same id, new <updated>) is fetched once more; its CAP is the same
        # message, so ingest answers "already received" and nothing is sent.
        await clock.advance(60)
        server.add("a1", server.docs["/cap/a1.xml"], T0 + timedelta(minutes=3))
        r = await feeds.poller.poll(src)
        assert r.duplicates == 1 and not r.ingested and server.hits["/cap/a1.xml"] == 2
        alerts_before = await st.count(Alert)
        deliveries_before = await st.count(Delivery)
        health = (await (await st.http.get("/api/v1/feeds", headers=st.auth)).json())["feeds"]
        assert health[0]["status"] == "ok" and health[0]["entries_ingested"] == 2
        assert health[0]["lag_seconds"] is not None

    # Restart on the same database: a fresh engine, no validators in memory. The feed is
    # fetched once (validators were persisted → 304); no entry is fetched or sent again.
    async with stack(db_url, tmp_path, sources=sources(server.url), clock=clock, seed_roster=False) as st:
        feeds = st.engine.feeds
        assert feeds is not None
        src = feeds.sources.by_name["hydro"]
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "not_modified"
        # Even if the server forgets its ETag, every entry is already seen.
        server.version += 1
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "ok" and r.already_seen == 2 and not r.ingested
        assert server.hits["/cap/a1.xml"] == 2 and server.hits["/cap/a2.xml"] == 1
        assert await st.count(Alert) == alerts_before and await st.count(Delivery) == deliveries_before


async def test_failures_back_off_and_keep_the_entry(db_url: str, tmp_path: Path, server: FeedServer) -> None:
    clock = ManualClock(T0)
    server.add("b1", cap("B-1", onset=T0 + timedelta(hours=4)), T0)
    async with stack(db_url, tmp_path, sources=sources(server.url), clock=clock) as st:
        feeds = st.engine.feeds
        assert feeds is not None
        src = feeds.sources.by_name["hydro"]
        server.fail = 2
        r = await feeds.poller.poll(src)
        assert r.status == "failed" and "503" in (r.error or "")
        assert (await feeds.poller.poll(src)).status == "skipped"  # backing off: 120 s
        await clock.advance(121)
        assert (await feeds.poller.poll(src)).status == "failed"  # second failure: 240 s
        await clock.advance(200)
        assert (await feeds.poller.poll(src)).status == "skipped"
        health = (await (await st.http.get("/api/v1/feeds", headers=st.auth)).json())["feeds"][0]
        assert health["status"] == "failing" and health["consecutive_failures"] == 2
        assert "503" in health["last_error"] and health["last_success_at"] is None
        await clock.advance(41)
        r = await feeds.poller.poll(src)
        assert r.status == "ok" and len(r.ingested) == 1

        # The CAP document itself fails: the poll fails, the validators are not advanced,
        # and the entry is fetched on the next poll.
        server.add("b2", cap("B-2", sent=T0 + timedelta(minutes=9), onset=T0 + timedelta(hours=4)),
                   T0 + timedelta(minutes=9))
        del server.docs["/cap/b2.xml"]
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "failed" and "404" in (r.error or "")
        server.docs["/cap/b2.xml"] = cap("B-2", sent=T0 + timedelta(minutes=9), onset=T0 + timedelta(hours=4))
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "ok" and len(r.ingested) == 1
        health = (await (await st.http.get("/api/v1/feeds", headers=st.auth)).json())["feeds"][0]
        assert health["status"] == "ok" and health["consecutive_failures"] == 0


async def test_untrusted_and_malformed_entries_are_refused_once(db_url: str, tmp_path: Path,
                                                                server: FeedServer) -> None:
    server.inline = True
    server.add("c1", cap("C-1", sender="intruder@example.com"), T0)
    server.add("c2", b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x", T0 + timedelta(seconds=1))
    server.inline = False  # the broken one cannot be embedded; served by link
    server.add("c3", cap("C-3", onset=T0 + timedelta(hours=4)), T0 + timedelta(seconds=2))
    async with stack(db_url, tmp_path, sources=sources(server.url)) as st:
        feeds = st.engine.feeds
        assert feeds is not None
        r = await feeds.poller.poll(feeds.sources.by_name["hydro"], force=True)
        assert r.status == "ok" and r.refused == 2 and len(r.ingested) == 1
        assert [a.identifier for a in await st.alerts()] == ["C-3"]
        assert [e.data["sender"] for e in await st.events("feed_rejected")] == ["intruder@example.com"]
        server.version += 1
        r = await feeds.poller.poll(feeds.sources.by_name["hydro"], force=True)
        assert r.already_seen == 3 and r.refused == 0


async def test_rss_feed_and_the_poll_module(db_url: str, tmp_path: Path, server: FeedServer) -> None:
    server.rss = True
    server.add("d1", cap("D-1", onset=T0 + timedelta(hours=4)), T0)
    async with stack(db_url, tmp_path, sources=sources(server.url)) as st:
        feeds = st.engine.feeds
        # The poll module (run by the engine) is what a deployment runs; the test steps it
        # directly rather than waiting on wall-clock time.
        assert feeds.polls in st.engine.runner.modules
        feeds.polls.enabled = True
        assert feeds.polls.poll_seconds == 0.05  # never polled: due at once
        await feeds.polls.step()
        assert [a.identifier for a in await st.alerts()] == ["D-1"]
        assert feeds.polls.poll_seconds is not None and feeds.polls.poll_seconds > 30  # next in a minute


def test_parse_feed_orders_oldest_first_and_refuses_junk() -> None:
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom"><id>f</id>
      <entry><id>new</id><updated>2026-07-01T03:00:00Z</updated><link href="http://x/new.xml"/></entry>
      <entry><id>old</id><updated>2026-07-01T02:00:00+00:00</updated><link href="http://x/old.xml"/></entry>
    </feed>"""
    items = parse_feed(atom)
    assert [i.entry_id for i in items] == ["old", "new"] and items[0].url == "http://x/old.xml"
    for junk in (b"<html><body>maintenance</body></html>", b"not xml",
                 b'<!DOCTYPE x [<!ENTITY a "b">]><feed xmlns="http://www.w3.org/2005/Atom"/>'):
        with pytest.raises(FeedError):
            parse_feed(junk)
