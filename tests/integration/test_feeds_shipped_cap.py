"""The shipped CAP test documents (tests/data/cap, sources in SOURCES.md) through a polled
feed on a clock set to their own dates: geocodes, an Update, a Cancel, a circle, a polygon,
and the malformed and hostile ones, each refused once and never fetched again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import update
from test_feeds_poller import FeedServer, server  # noqa: F401  (fixture)

from support.feeds_support import V1, V3, stack
from warnd.clock import ManualClock
from warnd.db.models import Region

CAP = Path(__file__).resolve().parents[1] / "data" / "cap"
BAD = ["bad_missing_sent", "bad_enum_status", "bad_polygon_not_closed", "bad_namespace_cap10",
       "not_xml", "truncated", "billion_laughs", "xxe_file", "xxe_external_dtd", "update_without_references"]


def square(lat: float, lon: float, d: float = 0.05) -> str:
    return (f"POLYGON(({lon - d} {lat - d}, {lon + d} {lat - d}, {lon + d} {lat + d}, "
            f"{lon - d} {lat + d}, {lon - d} {lat - d}))")


def sources(url: str) -> str:
    return f"""
[sources.hunan]
kind = "cap_poll"
url = "{url}/feed"
senders = ["431222_QXT@hn.cma.gov.cn", "shanhong@hnsw.gov.cn", "w-nws.webmaster@hn.cma.gov.cn"]
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_shipped_documents_through_a_polled_feed(db_url: str, tmp_path: Path,
                                                       server: FeedServer) -> None:  # noqa: F811
    clock = ManualClock(at("2024-06-15T08:10:00+08:00"))
    async with stack(db_url, tmp_path, sources=sources(server.url), clock=clock) as st:
        async with st.engine.db.session() as s, s.begin():
            # 辰龙关村 lies under the flash-flood circle, 麻溪铺村 under the thunderstorm polygon.
            await s.exec(update(Region).where(Region.code == V1).values(geometry_wkt=square(28.60, 110.30)))  # type: ignore[call-overload]
            await s.exec(update(Region).where(Region.code == V3).values(geometry_wkt=square(28.20, 110.20)))  # type: ignore[call-overload]
        st.engine.roster.invalidate()
        feeds = st.engine.feeds
        assert feeds is not None
        src = feeds.sources.by_name["hunan"]

        def publish(name: str, when: str) -> None:
            server.add(name, (CAP / f"{name}.xml").read_bytes(), at(when))

        publish("cma_rainstorm_geocode", "2024-06-15T08:05:00+08:00")
        for i, name in enumerate(BAD):
            publish(name, f"2024-06-15T08:06:{i:02d}+08:00")
        r = await feeds.poller.poll(src, force=True)
        assert r.status == "ok" and len(r.ingested) == 1 and r.refused == len(BAD)

        await clock.advance(at("2024-06-15T10:31:00+08:00") - clock.now())
        publish("cma_rainstorm_update", "2024-06-15T10:30:00+08:00")
        r = await feeds.poller.poll(src, force=True)
        assert len(r.ingested) == 1 and r.already_seen == 1 + len(BAD) and r.refused == 0

        await clock.advance(at("2024-06-15T21:41:00+08:00") - clock.now())
        publish("cma_rainstorm_cancel", "2024-06-15T18:30:00+08:00")
        publish("circle_flash_flood", "2024-06-15T21:40:00+08:00")
        r = await feeds.poller.poll(src, force=True)
        assert len(r.ingested) == 2

        await clock.advance(at("2024-07-02T15:11:00+08:00") - clock.now())
        publish("polygon_thunderstorm", "2024-07-02T15:10:00+08:00")
        r = await feeds.poller.poll(src, force=True)
        assert len(r.ingested) == 1

        alerts = {a.identifier: a for a in await st.alerts()}
        first, upd = alerts["43122241600000_20240615080500"], alerts["43122241600000_20240615103000"]
        assert first.state == "superseded" and first.hazard == "rainstorm"
        assert upd.supersedes_id == first.id and upd.colour == "orange" and upd.state == "cancelled"
        flash = alerts["HNSW-431222-SH-20240615-0007"]
        assert flash.hazard == "flash_flood" and flash.step == "imminent" and V1 in flash.region_codes
        storm = alerts["HN-431222-TSTM-20240702-0001"]
        assert storm.hazard == "lightning" and V3 in storm.region_codes and V1 not in storm.region_codes
        async with st.engine.db.session() as s:
            from sqlmodel import select

            from warnd.db.models import FeedEntry

            outcomes = {e.entry_key.split("|")[0]: (e.outcome, e.detail)
                        for e in (await s.exec(select(FeedEntry))).all()}
        for name in BAD:
            assert outcomes[name][0] == "refused", name
        assert "400" in (outcomes["billion_laughs"][1] or "")
        assert server.doc_hits() == len(BAD) + 5  # every document fetched exactly once
