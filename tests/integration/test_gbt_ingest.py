"""GB/T 35965.1 warnings (the national platform's format) through the real HTTP ingest, on
SQLite and PostgreSQL: POST /api/v1/alerts, a feed push and a polled feed; chains whose
Updates and Cancel reference the FIRST message; trust on the chain; a default expiry when
<expires/> is empty; the per-channel texts; text-only 解除; out-of-area Henan warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from support.feeds_support import T0, V1, V2, Stack, stack
from warnd.config import IngestCfg
from warnd.core.domain import AlertState
from warnd.db.models import Alert, Delivery

DATA = Path(__file__).resolve().parents[1] / "data" / "gbt"
YL = "43122241600000"  # 沅陵县气象台's sender code
FIRST = f"{YL}_20260701095800"
PUSH_TOKEN = "push-token-0123456789abcdef"
SOURCES = f"""
[sources.platform]
kind = "cap_push"
senders = ["{YL}", "43000041600000"]
token = "{PUSH_TOKEN}"
"""


def doc(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(db_url, tmp_path, sources=SOURCES) as s:
        yield s


async def at_cst(st: Stack, hh: int, mm: int) -> None:
    """Move the manual clock to hh:mm Beijing time on 2026-07-01 (T0 is 10:00)."""
    target = datetime(2026, 7, 1, hh - 8, mm, tzinfo=UTC)
    await st.clock.advance((target - st.clock.now()).total_seconds())


async def alert_by_identifier(st: Stack, identifier: str) -> Alert:
    return next(a for a in await st.alerts() if a.identifier == identifier)


async def test_a_chain_referencing_its_first_message(st: Stack) -> None:
    assert st.clock.now() == T0
    status, body = await st.post_cap(doc("yuanling_rain_alert.xml"))
    assert status == 201, body
    assert body["colour"] == "yellow" and body["calls"] > 0
    first = await alert_by_identifier(st, FIRST)
    assert first.sender == YL and first.hazard == "rainstorm" and first.sender_name == "沅陵县气象台"
    assert set(first.region_codes) >= {V1, V2}
    # <expires/>: the hazard's default lifetime from vocabulary.toml (24 h), never forever.
    assert first.expires == datetime(2026, 7, 2, 1, 58, tzinfo=UTC)
    accepted = next(e for e in await st.events("alert_accepted") if e.alert_id == first.id)
    assert accepted.data["format"] == "gbt35965" and accepted.data["expires_default"]
    # The platform's SMS text goes out on SMS, warnd's confirm request kept.
    sms = [d for d in await st.deliveries(first.id or 0) if d.channel == "sms" and d.purpose == "warning"]
    assert sms and all("预计未来6小时辰龙关村、桃坪村降雨量将达50毫米以上" in d.body for d in sms)
    assert all("回复1" in d.body for d in sms)

    await at_cst(st, 10, 20)
    status, body = await st.post_cap(doc("yuanling_rain_update.xml"))
    assert status == 201 and body["colour"] == "orange" and body["superseded"] == [first.id]
    update1 = await alert_by_identifier(st, f"{YL}_20260701102000")

    # The second Update references the FIRST message again, not update1: the chain is followed.
    await at_cst(st, 10, 40)
    status, body = await st.post_cap(doc("yuanling_rain_update2.xml"))
    assert status == 201 and body["superseded"] == [update1.id], body
    update2 = await alert_by_identifier(st, f"{YL}_20260701104000")
    states = {a.identifier: a.state for a in await st.alerts()}
    assert states[FIRST] == AlertState.SUPERSEDED and states[update1.identifier] == AlertState.SUPERSEDED
    assert states[update2.identifier] == AlertState.ACTIVE
    assert update2.expires == datetime(2026, 7, 1, 15, 0, tzinfo=UTC)  # stated: 23:00+08:00

    # A retry of the same document is the same answer, nothing twice.
    status, body = await st.post_cap(doc("yuanling_rain_update2.xml"))
    assert status == 200 and body["created"] is False

    # The Cancel also names the first message: whatever of the chain is active is lifted.
    await at_cst(st, 11, 0)
    status, body = await st.post_cap(doc("yuanling_rain_cancel.xml"))
    assert status == 201 and body["cancelled_calls"] >= 0, body
    states = {a.identifier: a.state for a in await st.alerts()}
    assert states[update2.identifier] == AlertState.CANCELLED


async def test_text_only_lifting_in_an_update_is_a_cancel(st: Stack) -> None:
    assert (await st.post_cap(doc("yuanling_rain_alert.xml")))[0] == 201
    await at_cst(st, 10, 20)
    assert (await st.post_cap(doc("yuanling_rain_update.xml")))[0] == 201
    await at_cst(st, 11, 5)
    status, body = await st.post_cap(doc("yuanling_rain_lifted_text.xml"))
    assert status == 201, body
    states = {a.identifier: a.state for a in await st.alerts()}
    assert states[f"{YL}_20260701102000"] == AlertState.CANCELLED
    lifted = await alert_by_identifier(st, f"{YL}_20260701110500")
    assert lifted.msg_type == "Cancel" and lifted.state == AlertState.CANCELLED


async def test_another_sender_may_not_update_the_chain_through_its_first_message(st: Stack) -> None:
    assert (await st.post_cap(doc("yuanling_rain_alert.xml")))[0] == 201
    await at_cst(st, 10, 20)
    assert (await st.post_cap(doc("yuanling_rain_update.xml")))[0] == 201
    # The province's platform code, referencing our county's FIRST message (already superseded):
    # trust is checked against the active message of the chain, and refused.
    foreign = doc("yuanling_rain_update2.xml").replace(
        f"<senderCode>{YL}</senderCode>".encode(), b"<senderCode>43000041600000</senderCode>").replace(
        f"<identifier>{YL}_20260701104000".encode(), b"<identifier>43000041600000_20260701104000").replace(
        f"<references>{FIRST}</references>".encode(), f"<references>{YL},{FIRST},2026-07-01 09:58:00+08:00"
                                                      "</references>".encode())
    await at_cst(st, 10, 40)
    status, body = await st.post_cap(foreign)
    assert status == 403 and body["field"] == "alert.references", body
    assert body["referenced"] == [[YL, f"{YL}_20260701102000"]]
    states = {a.identifier: a.state for a in await st.alerts()}
    assert states[f"{YL}_20260701102000"] == AlertState.ACTIVE


async def test_code_text_conflict_is_recorded_and_the_text_trusted(st: Stack) -> None:
    status, _body = await st.post_cap(doc("yuanling_code_conflict.xml"))
    assert status == 201
    alert = await alert_by_identifier(st, f"{YL}_20260701095900")
    assert alert.hazard == "rainstorm"
    [conflict] = await st.events("hazard_code_conflict")
    assert conflict.alert_id == alert.id
    assert conflict.data["codes"] == ["11B06"] and conflict.data["code_hazard"] == "gale"
    assert conflict.data["text_hazard"] == "rainstorm"


async def test_henan_warning_is_recorded_out_of_area(db_url: str, tmp_path: Path) -> None:
    from warnd.clock import ManualClock

    clock = ManualClock(datetime(2020, 2, 5, 3, 0, tzinfo=UTC))  # 11:00 Beijing time
    async with stack(db_url, tmp_path, clock=clock, ingest=IngestCfg(max_age_without_expires_hours=48)) as s:
        status, body = await s.post_cap(doc("henan_gale_update.xml"))
        assert status == 202 and body["state"] == "out_of_area", body
        [a] = await s.alerts()
        assert a.hazard == "gale" and a.colour == "blue" and a.sender == "41000041600000"
        assert await s.count(Delivery) == 0


async def test_malformed_gbt_is_a_4xx_naming_the_field(st: Stack) -> None:
    bad = doc("yuanling_rain_alert.xml").replace(b"2026-07-01 09:58:00+08:00</sendTime>", b"tomorrow</sendTime>")
    status, body = await st.post_cap(bad)
    assert status == 400 and body["field"] == "alert.sendTime"
    assert await st.count(Alert) == 0


async def test_feed_push_accepts_gbt(st: Stack) -> None:
    r = await st.http.post("/api/v1/feeds/platform/cap", data=doc("yuanling_rain_alert.xml"),
                           headers={"Authorization": f"Bearer {PUSH_TOKEN}", "Content-Type": "application/xml"})
    assert r.status == 201, await r.text()
    a = await alert_by_identifier(st, FIRST)
    assert a.source == "feed:platform"
    # An unlisted sender code is refused by the source's allow-list.
    other = doc("henan_gale_alert.xml")
    r = await st.http.post("/api/v1/feeds/platform/cap", data=other,
                           headers={"Authorization": f"Bearer {PUSH_TOKEN}"})
    assert r.status == 403


async def test_polled_feed_of_gbt_documents(db_url: str, tmp_path: Path) -> None:
    docs = {"/gbt/1.xml": doc("yuanling_rain_alert.xml")}

    async def feed(request: web.Request) -> web.Response:
        items = "".join(f"<item><title>{p}</title><link>{base}{p}</link><guid>{p}</guid>"
                        f"<pubDate>Wed, 01 Jul 2026 01:58:00 +0000</pubDate></item>" for p in docs)
        return web.Response(body=f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}'
                                 f'</channel></rss>'.encode(), content_type="application/rss+xml")

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=docs[request.path], content_type="application/xml")

    app = web.Application()
    app.router.add_get("/feed", feed)
    app.router.add_get("/gbt/{n}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    sources = f'[sources.province]\nkind = "cap_poll"\nurl = "{base}/feed"\nsenders = ["{YL}"]\n'
    try:
        async with stack(db_url, tmp_path, sources=sources) as st:
            assert st.engine.feeds is not None
            src = st.engine.feeds.sources.by_name["province"]
            r = await st.engine.feeds.poller.poll(src, force=True)
            assert r.status == "ok" and len(r.ingested) == 1, r
            a = await alert_by_identifier(st, FIRST)
            assert a.source == "feed:province" and a.hazard == "rainstorm"
            assert a.expires is not None and a.expires - a.sent == timedelta(hours=24)
    finally:
        await runner.cleanup()


async def test_mangled_documents_are_a_4xx_never_a_500(st: Stack) -> None:
    """Arbitrary damage to real samples through the real route: refused with the parser's own
    problem (4xx) or accepted, never a server error (the parser itself is fuzzed in
    tests/unit/test_gbt_parser.py)."""
    import random

    rnd = random.Random(13)
    samples = [doc(n) for n in ("yuanling_rain_alert.xml", "yuanling_rain_update.xml", "henan_gale_cancel.xml")]
    for _ in range(40):
        d = rnd.choice(samples)
        at = rnd.randrange(len(d))
        d = d[:at] + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 6))) + d[at + rnd.randrange(0, 6):]
        status, body = await st.post_cap(d)
        assert status < 500, body
        if status >= 400:
            assert body["title"] and "detail" in body
