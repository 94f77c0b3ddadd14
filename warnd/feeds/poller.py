"""Polling CAP Atom/RSS feeds.

Each `cap_poll` source is polled every `interval_seconds` (real time) by the `FeedPolls`
engine module. A poll:

1. skips if the source is backing off (`next_poll_at`, clock time);
2. GETs the feed with `If-None-Match` / `If-Modified-Since` from the last good poll;
   a 304 is a success with nothing new;
3. walks the entries oldest first (so an Alert is ingested before the Update that
   references it); an entry already in `feed_entries` is skipped without fetching it; the
   CAP document is taken from the entry's content when it embeds one, else fetched from
   its link; it is ingested with the source's trust and mapping;
4. records each entry dealt with (ingested, duplicate, refused) in `feed_entries` —
   a restart never fetches or sends it again — and only then stores the new validators.

A fetch error, a malformed feed or a database error fails the whole poll: the validators
are not advanced (so the next poll is not a 304 that hides an unprocessed entry), and the
source backs off exponentially up to `max_backoff_seconds`. If the process dies between
ingesting an entry and recording it, the entry is fetched again after the restart and
ingest's sender+identifier dedupe answers "already received": nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree.ElementTree import Element, ParseError, tostring

import aiohttp
import defusedxml
import defusedxml.ElementTree as SafeET
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from warnd.cap.formats import is_warning_root
from warnd.clock import Clock
from warnd.db.engine import Database
from warnd.db.models import FeedEntry, FeedState
from warnd.engine.ingest import IngestError, Ingestor
from warnd.engine.module import ModuleBase
from warnd.feeds.sources import Source, Sources

log = structlog.get_logger("warnd.feeds")

ATOM = "{http://www.w3.org/2005/Atom}"
MAX_FEED_BYTES = 10 * 1024 * 1024
MAX_CAP_BYTES = 5 * 1024 * 1024


class FeedError(Exception):
    pass


@dataclass(frozen=True)
class FeedItem:
    entry_id: str
    updated: str  # as written in the feed ("" when absent)
    url: str | None
    inline: bytes | None  # an embedded CAP <alert>
    when: datetime | None  # parsed updated/published time, for ordering and lag

    @property
    def key(self) -> str:
        return f"{self.entry_id}|{self.updated}"[:512]


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = text.strip()
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(t)
        except (TypeError, ValueError):
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _embedded_alert(el: Element | None) -> bytes | None:
    if el is None:
        return None
    for child in el.iter():
        # A CAP <alert>, or a GB/T 35965.1 one (no namespace of its own: inside an Atom
        # entry it inherits Atom's, so it is recognised by its children).
        if isinstance(child.tag, str) and child is not el and is_warning_root(child):
            return tostring(child, encoding="utf-8")
    return None


def _cap_link(links: list[tuple[str, str, str]]) -> str | None:
    """(href, rel, type) → the link most likely to be the CAP document."""
    for href, _rel, typ in links:
        if "cap" in typ.lower() and href:
            return href
    for href, rel, _typ in links:
        if rel in ("", "alternate") and href:
            return href
    return links[0][0] if links and links[0][0] else None


def parse_feed(data: bytes) -> list[FeedItem]:
    """Entries of an Atom 1.0 or RSS 2.0 feed, oldest first (by their time when every
    entry has one, else in reverse document order — feeds list the newest first)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (ParseError, defusedxml.DefusedXmlException, ValueError) as err:
        raise FeedError(f"feed is not well-formed XML: {err}") from None
    items: list[FeedItem] = []
    if root.tag == f"{ATOM}feed":
        for e in root.findall(f"{ATOM}entry"):
            eid = (e.findtext(f"{ATOM}id") or "").strip()
            updated = (e.findtext(f"{ATOM}updated") or e.findtext(f"{ATOM}published") or "").strip()
            links = [(ln.get("href", ""), ln.get("rel", ""), ln.get("type", "")) for ln in e.findall(f"{ATOM}link")]
            url = _cap_link(links)
            inline = _embedded_alert(e.find(f"{ATOM}content"))
            if not eid:
                eid = url or ""
            if not eid:
                continue
            items.append(FeedItem(eid, updated, url, inline, _parse_time(updated)))
    elif root.tag == "rss":
        channel = root.find("channel")
        for e in channel.findall("item") if channel is not None else []:
            link = (e.findtext("link") or "").strip()
            enclosure = e.find("enclosure")
            if enclosure is not None and "cap" in enclosure.get("type", "").lower():
                link = enclosure.get("url", link)
            eid = (e.findtext("guid") or "").strip() or link
            updated = (e.findtext("pubDate") or "").strip()
            if not eid:
                continue
            items.append(FeedItem(eid, updated, link or None, _embedded_alert(e), _parse_time(updated)))
    else:
        raise FeedError(f"not an Atom or RSS feed (root element {root.tag!r})")
    items.reverse()
    if items and all(i.when is not None for i in items):
        items.sort(key=lambda i: i.when or datetime.min.replace(tzinfo=UTC))
    return items


@dataclass
class PollResult:
    source: str
    status: str  # skipped | not_modified | ok | failed
    ingested: list[int] = field(default_factory=list)
    duplicates: int = 0
    refused: int = 0
    already_seen: int = 0
    error: str | None = None


class Poller:
    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor,
                 session_factory: Callable[[], aiohttp.ClientSession] | None = None):
        self.db, self.clock, self.ingestor = db, clock, ingestor
        self.session_factory = session_factory or (lambda: aiohttp.ClientSession())
        self._locks: dict[str, asyncio.Lock] = {}

    async def poll(self, source: Source, *, force: bool = False) -> PollResult:
        """One poll of one source (the scheduler job; tests call it directly)."""
        lock = self._locks.setdefault(source.name, asyncio.Lock())
        async with lock:
            return await self._poll(source, force)

    async def _state(self, name: str) -> FeedState:
        async with self.db.session() as s:
            st = await s.get(FeedState, name)
        return st or FeedState(source=name)

    async def _save_state(self, st: FeedState) -> None:
        async with self.db.session() as s, s.begin():
            await s.merge(st)

    async def _poll(self, source: Source, force: bool) -> PollResult:
        now = self.clock.now()
        st = await self._state(source.name)
        if not force and st.next_poll_at is not None and now < st.next_poll_at:
            return PollResult(source.name, "skipped")
        result = PollResult(source.name, "ok")
        st.last_poll_at = now
        try:
            timeout = aiohttp.ClientTimeout(total=source.timeout_seconds)
            async with self.session_factory() as http:
                headers = dict(source.headers)
                if st.etag:
                    headers["If-None-Match"] = st.etag
                if st.last_modified:
                    headers["If-Modified-Since"] = st.last_modified
                async with http.get(source.url, headers=headers, timeout=timeout) as resp:
                    if resp.status == 304:
                        result.status = "not_modified"
                        etag, modified, body = st.etag, st.last_modified, None
                    elif resp.status != 200:
                        raise FeedError(f"feed answered HTTP {resp.status}")
                    else:
                        body = await _read_limited(resp, MAX_FEED_BYTES)
                        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                if body is not None:
                    for item in parse_feed(body):
                        await self._entry(http, source, item, timeout, result, st)
        except (aiohttp.ClientError, TimeoutError, FeedError, OSError) as e:
            return await self._failed(st, source, now, f"{type(e).__name__}: {e}", result)
        except Exception as e:  # database trouble etc.: back off, the entry is retried
            log.exception("feed poll failed", source=source.name)
            return await self._failed(st, source, now, f"{type(e).__name__}: {e}", result)
        st.etag, st.last_modified = etag, modified
        st.last_success_at, st.failures, st.next_poll_at = now, 0, None
        await self._save_state(st)
        return result

    async def _failed(self, st: FeedState, source: Source, now: datetime, error: str,
                      result: PollResult) -> PollResult:
        st.failures += 1
        st.last_error, st.last_error_at = error[:1000], now
        delay = min(source.interval_seconds * 2 ** st.failures, source.max_backoff_seconds)
        st.next_poll_at = now + timedelta(seconds=delay)
        await self._save_state(st)
        log.warning("feed poll failed", source=source.name, error=error, retry_in=delay)
        result.status, result.error = "failed", error
        return result

    async def _seen(self, source: str, key: str) -> bool:
        async with self.db.session() as s:
            return (await s.exec(select(FeedEntry.id).where(
                FeedEntry.source == source, FeedEntry.entry_key == key))).first() is not None

    async def _entry(self, http: aiohttp.ClientSession, source: Source, item: FeedItem,
                     client_timeout: aiohttp.ClientTimeout, result: PollResult, st: FeedState) -> None:
        if await self._seen(source.name, item.key):
            result.already_seen += 1
            return
        doc = item.inline
        if doc is None:
            if not item.url:
                raise FeedError(f"entry {item.entry_id!r} has neither a CAP link nor embedded CAP")
            async with http.get(item.url, headers=dict(source.headers), timeout=client_timeout) as resp:
                if resp.status != 200:
                    raise FeedError(f"entry {item.entry_id!r}: {item.url} answered HTTP {resp.status}")
                doc = await _read_limited(resp, MAX_CAP_BYTES)
        alert_id: int | None = None
        detail: str | None = None
        try:
            r = await self.ingestor.submit_cap(doc, source=source.ingest_name)
            outcome = ("duplicate" if not r.created else "out_of_area" if r.state == "out_of_area" else "ingested")
            alert_id = r.alert_id
        except IngestError as e:
            outcome, detail = "refused", f"{e.status} {e.title}: {e.detail}"
        now = self.clock.now()
        try:
            async with self.db.session() as s, s.begin():
                s.add(FeedEntry(source=source.name, entry_key=item.key, url=item.url, seen_at=now,
                                outcome=outcome, alert_id=alert_id, detail=detail))
        except IntegrityError:
            pass  # another instance recorded it first
        if outcome == "ingested" and alert_id is not None:
            result.ingested.append(alert_id)
            st.entries_ingested += 1
            st.last_entry_at = now
            if item.when is not None:
                st.last_lag_seconds = max((now - item.when).total_seconds(), 0.0)
        elif outcome == "duplicate":
            result.duplicates += 1
        else:
            result.refused += 1
            log.warning("feed entry refused", source=source.name, entry=item.entry_id, detail=detail)


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise FeedError(f"{resp.url}: {resp.content_length} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise FeedError(f"{resp.url}: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def health_row(source: Source, st: FeedState | None, now: datetime) -> dict[str, Any]:
    """The source-health view of one source (GET /api/v1/feeds)."""
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    st = st or FeedState(source=source.name)
    if st.last_success_at is None and st.last_error_at is None:
        status = "never"
    elif st.failures:
        status = "failing"
    else:
        status = "ok"
    since = (now - st.last_success_at).total_seconds() if st.last_success_at else None
    if status == "ok" and source.kind == "cap_poll" and since is not None \
            and since > 3 * source.interval_seconds + 60:
        status = "stale"
    return {
        "name": source.name, "kind": source.kind, "enabled": source.enabled, "status": status,
        "url": source.url or None, "last_poll_at": iso(st.last_poll_at),
        "last_success_at": iso(st.last_success_at), "seconds_since_success": since,
        "last_error": st.last_error, "last_error_at": iso(st.last_error_at),
        "consecutive_failures": st.failures, "next_poll_at": iso(st.next_poll_at),
        "lag_seconds": st.last_lag_seconds, "last_entry_at": iso(st.last_entry_at),
        "entries_ingested": st.entries_ingested,
    }


class FeedPolls(ModuleBase):
    """Polls every enabled `cap_poll` source on its interval. Intervals are real time: a feed is
    a service on the wall clock, even while a drill runs the engine on a scaled one. The
    poll's own backoff after failures (`next_poll_at`) is kept by `Poller.poll`."""

    name = "feed_polls"

    def __init__(self, poller: Poller, sources: Sources):
        super().__init__()
        self.poller, self.sources = poller, sources
        self.enabled = True  # False: tests drive polls themselves on a manual clock
        self._next: dict[str, float] = {}  # source name → monotonic time of its next poll

    @property
    def poll_seconds(self) -> float | None:  # type: ignore[override]
        polls = self.sources.of_kind("cap_poll")
        if not polls or not self.enabled:
            return None
        now = time.monotonic()
        return max(min(self._next.get(s.name, now) for s in polls) - now, 0.05)

    async def step(self) -> bool:
        if not self.enabled:
            return False
        now = time.monotonic()
        for src in self.sources.of_kind("cap_poll"):
            if self._next.get(src.name, now) <= now:
                self._next[src.name] = now + src.interval_seconds
                await self.poller.poll(src)
        return False
