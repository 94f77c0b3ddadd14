"""Telemetry → automatic 山洪 warnings through the real engine: readings over the Python
API (what the demo drives), HTTP and MQTT (real Mosquitto on 127.0.0.1:1883)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest

from support.feeds_support import T0, V1, V2, V3, Stack, stack
from warnd.core.thresholds import TLevel
from warnd.db.models import Alert
from warnd.feeds.telemetry import Reading, TelemetryError, feed_readings, parse_readings

TOKEN = "gauge-token-0123456789abcdef"
STATIONS = """
[defaults]
clear_ratio = 0.8
hold_off_minutes = 60
max_age_minutes = 30
expires_hours = 6

[stations.YL001]
name = "辰龙关雨量站"
area_desc = "官庄镇辰龙关村、桃坪村"
villages = ["431222100200", "431222100201"]
rain_1h = [30, 50]
rain_3h = [50, 80]

[stations.YL002]
name = "麻溪铺水位站"
area_desc = "麻溪铺镇麻溪铺村"
villages = ["431222101200"]
level_m = [3.5, 4.2]
"""


def sources(topic: str = "warnd/telemetry/+") -> str:
    return f"""
[sources.gauges]
kind = "telemetry"
token = "{TOKEN}"
mqtt_url = "mqtt://127.0.0.1:1883"
topic = "{topic}"
"""


@pytest.fixture
async def st(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with stack(db_url, tmp_path, sources=sources(f"warnd-test/{uuid.uuid4().hex}/+"),
                     stations=STATIONS) as s:
        yield s


async def rain(st: Stack, minute: int, mm: float, station: str = "YL001", lag: int = 0):  # type: ignore[no-untyped-def]
    """A reading taken at T0+minute, handled when the clock reads T0+minute+lag."""
    target = T0 + timedelta(minutes=minute + lag)
    if st.clock.now() < target:
        await st.clock.advance(target - st.clock.now())
    assert st.engine.feeds is not None
    (out,) = await feed_readings(st.engine.feeds.telemetry,
                                 [Reading(station, T0 + timedelta(minutes=minute), rain_mm=mm)])
    return out


async def test_storm_raises_prepare_then_evacuate_for_exactly_the_guarded_villages(st: Stack) -> None:
    outs = [await rain(st, m, 12) for m in (0, 10, 20)]  # 1 h totals 12, 24, 36 mm
    assert [o.raised for o in outs] == [None, None, TLevel.PREPARE]
    (prep,) = await st.alerts()
    assert prep.source == "telemetry:YL001" and prep.hazard == "flash_flood" and prep.step == "warning"
    assert prep.colour == "orange" and "1小时降雨量36.0毫米" in prep.headline
    assert {c[:12] for c in prep.region_codes if len(c) >= 12} == {V1, V2} and V3 not in prep.region_codes
    calls = await st.calls_by_name(prep.id or 0)
    assert set(calls) == {"刘镇长", "官庄值班"}  # warning step: the township of those villages only

    # Still raining: 48 mm — no new warning; 60 mm crosses 立即转移 → an Update at imminent.
    assert (await rain(st, 30, 12)).raised is None
    out = await rain(st, 40, 12)
    assert out.raised == TLevel.EVACUATE
    alerts = await st.alerts()
    assert [a.state for a in alerts] == ["superseded", "active"]
    evac = alerts[1]
    assert evac.step == "imminent" and evac.colour == "red" and evac.msg_type == "Update"
    names = set(await st.calls_by_name(evac.id or 0))
    assert {"辰书记", "辰主任", "辰网格", "桃书记", "桃主任", "桃网格"} <= names
    assert not any(n.startswith("麻") for n in names)

    # Heavy rain continues for an hour: not one more warning.
    for m in range(50, 110, 10):
        assert (await rain(st, m, 15)).raised is None
    assert len(await st.alerts()) == 2


async def test_hovering_late_duplicate_and_fall_back(st: Stack) -> None:
    assert st.engine.feeds is not None
    tel = st.engine.feeds.telemetry

    async def level(minute: int, v: float, lag: int = 0):  # type: ignore[no-untyped-def]
        target = T0 + timedelta(minutes=minute + lag)
        if st.clock.now() < target:
            await st.clock.advance(target - st.clock.now())
        return await tel.submit(Reading("YL002", T0 + timedelta(minutes=minute), level_m=v))

    assert (await level(0, 3.0)).reason == "steady"
    assert (await level(5, 3.55)).raised == TLevel.PREPARE
    # Hovering around 3.5 m for an hour: one warning.
    for i, m in enumerate(range(10, 70, 5)):
        out = await level(m, 3.45 if i % 2 else 3.6)
        assert out.raised is None, out
    # A duplicate and a late (out-of-order) reading of a flood peak change nothing.
    assert (await level(65, 3.6)).reason == "duplicate"
    late = await level(7, 4.5)
    assert late.reason == "late" and late.raised is None
    # A reading taken 40 minutes ago arriving now is stale: no warning.
    stale = await level(75, 4.6, lag=40)
    assert stale.reason == "stale" and stale.raised is None
    # Falls back below 0.8 × 3.5 m: cleared, logged; the warning itself is not lifted by this.
    assert (await level(120, 2.5)).reason == "clear"
    assert [e.data["station"] for e in await st.events("telemetry_cleared")] == ["YL002"]
    assert [a.state for a in await st.alerts()] == ["active"]
    # Another rise after the hold-off: a new warning; an unknown station is refused.
    assert (await level(130, 4.3)).raised == TLevel.EVACUATE
    assert len(await st.alerts()) == 2
    assert (await tel.submit(Reading("NOPE", st.clock.now(), rain_mm=99))).reason == "unknown_station"
    assert [e.data["station"] for e in await st.events("telemetry_rejected")] == ["NOPE"]


async def test_http_readings(st: Stack) -> None:
    url = "/api/v1/feeds/gauges/telemetry"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = [{"station": "YL002", "time": (T0 - timedelta(minutes=5)).isoformat(), "level_m": 3.1},
            {"station": "YL002", "time": "2026-07-01T10:00:00+08:00", "level_m": 4.25}]
    r = await st.http.post(url, json=body, headers=auth)
    assert r.status == 200
    out = (await r.json())["readings"]
    assert [o["raised"] for o in out] == [None, "立即转移"]
    r = await st.http.post(url, json=body[1], headers=auth)
    assert (await r.json())["readings"][0]["reason"] == "duplicate"
    assert (await st.http.post(url, json=body, headers=st.auth)).status == 401  # API token ≠ gauge token
    r = await st.http.post(url, data=b"{", headers=auth)
    assert r.status == 422 and (await r.json())["field"] == "$"
    r = await st.http.post(url, json={"station": "YL002", "time": "2026-07-01 10:00", "level_m": 1}, headers=auth)
    assert r.status == 422 and (await r.json())["field"] == "time"
    assert (await st.http.post("/api/v1/feeds/nosuch/telemetry", json=body, headers=auth)).status == 401
    health = (await (await st.http.get("/api/v1/feeds", headers=st.auth)).json())["feeds"]
    gauges = next(f for f in health if f["name"] == "gauges")
    assert gauges["last_success_at"] is not None and gauges["last_error"] == "time must be an ISO 8601 time with a zone"
    stations = {s["station"]: s for s in health[-1]["stations"]}
    assert stations["YL002"]["level"] == "立即转移" and stations["YL001"]["last_reading_at"] is None


async def test_mqtt_reading_raises_a_warning(st: Stack) -> None:
    feeds = st.engine.feeds
    assert feeds is not None
    topic = feeds.sources.by_name["gauges"].topic.replace("+", "YL002")
    # Wait until warnd's subscriber is connected (the broker does not keep QoS-1 messages
    # for a subscription that does not exist yet), then publish as a station would.
    payload = json.dumps({"time": T0.isoformat(), "level_m": 4.4}).encode()
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"station-{uuid.uuid4().hex[:8]}") as client:
        for _ in range(100):
            await client.publish(topic, payload, qos=1)
            if await st.count(Alert):
                break
            await asyncio.sleep(0.2)
        await client.publish(topic.replace("YL002", "YL001"), b"not json", qos=1)
    (alert,) = await st.alerts()
    assert alert.source == "telemetry:YL002" and alert.step == "imminent"
    for _ in range(50):
        if await st.events("telemetry_rejected"):
            break
        await asyncio.sleep(0.1)
    assert (await st.events("telemetry_rejected"))[0].data["reason"] == "body is not JSON"


async def test_restart_keeps_station_state(db_url: str, tmp_path: Path) -> None:
    from warnd.clock import ManualClock

    clock = ManualClock(T0)
    async with stack(db_url, tmp_path, stations=STATIONS, clock=clock) as st:
        assert (await rain(st, 0, 40)).raised == TLevel.PREPARE
    async with stack(db_url, tmp_path, stations=STATIONS, clock=clock, seed_roster=False) as st:
        assert (await rain(st, 10, 5)).raised is None  # 45 mm: same level, no new warning
        assert (await rain(st, 5, 30)).reason == "late"
        assert len(await st.alerts()) == 1


def test_reading_format_validation() -> None:
    ok = parse_readings({"station": "A", "time": "2026-07-01T10:00:00Z", "rain_mm": 1})
    assert ok[0].at.hour == 10 and ok[0].level_m is None
    assert parse_readings({"time": "2026-07-01T10:00:00+08:00", "level_m": 2}, topic_station="B")[0].station == "B"
    for bad, field in [({"station": "A", "time": "2026-07-01T10:00:00Z"}, "$"),
                       ({"station": "A", "time": "yesterday", "rain_mm": 1}, "time"),
                       ({"station": "A", "time": "2026-07-01T10:00:00Z", "rain_mm": "5"}, "rain_mm"),
                       ({"station": "A", "time": "2026-07-01T10:00:00Z", "rain_mm": -1}, "rain_mm"),
                       ({"time": "2026-07-01T10:00:00Z", "rain_mm": 1}, "station"),
                       ([], "$"), ([{"station": "A", "time": "x", "level_m": 1}], "[0]time")]:
        with pytest.raises(TelemetryError) as e:
            parse_readings(bad)
        assert e.value.field == field, bad
    with pytest.raises(TelemetryError):
        parse_readings({"station": "A", "time": "2026-07-01T10:00:00Z", "rain_mm": 1}, topic_station="B")


async def test_demo_api_rain_series_and_bad_config(st: Stack, tmp_path: Path) -> None:
    from warnd.config import ConfigError
    from warnd.feeds.service import FeedConfig
    from warnd.feeds.telemetry import rain_series

    assert st.engine.feeds is not None
    readings = rain_series("YL001", T0, [10, 15, 30])  # T0, T0+10, T0+20: 1 h totals 10, 25, 55
    await st.clock.advance(timedelta(minutes=20))
    outs = await feed_readings(st.engine.feeds.telemetry, readings)
    assert [o.raised for o in outs] == [None, None, TLevel.EVACUATE]
    bad = tmp_path / "bad-stations.toml"
    bad.write_text('[stations.X]\nvillages = ["431222100200"]\nrain_1h = [50, 30]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="rain_1h"):
        FeedConfig.load(stations_path=str(bad))


async def test_reading_stored_but_not_evaluated_is_evaluated_on_redelivery(st: Stack) -> None:
    from warnd.db.models import TelemetryReading

    at = T0 + timedelta(minutes=1)
    await st.clock.advance(timedelta(minutes=2))
    # The process died after storing the reading and before evaluating it.
    async with st.engine.db.session() as s, s.begin():
        s.add(TelemetryReading(station="YL002", metric="level_m", at=at, value=4.5, received_at=at))
    assert st.engine.feeds is not None
    out = await st.engine.feeds.telemetry.submit(Reading("YL002", at, level_m=4.5))  # MQTT redelivery
    assert out.stored is False
    # Either the redelivery evaluated it or the telemetry module got there first: one warning.
    assert out.raised == TLevel.EVACUATE or out.reason == "duplicate"
    again = await st.engine.feeds.telemetry.submit(Reading("YL002", at, level_m=4.5))
    assert again.reason == "duplicate"
    assert [a.step for a in await st.alerts()] == ["imminent"]


async def test_reading_stored_but_never_evaluated_is_evaluated_by_the_engine(st: Stack) -> None:
    """No redelivery needed: the telemetry module finds stored readings nobody evaluated (the
    process died in between, or another instance stored them) and evaluates them."""
    from warnd.db.models import TelemetryReading

    at = T0 + timedelta(minutes=1)
    await st.clock.advance(timedelta(minutes=2))
    async with st.engine.db.session() as s, s.begin():
        s.add(TelemetryReading(station="YL002", metric="level_m", at=at, value=4.5, received_at=at))
    st.engine.kick()
    await st.engine.runner.settle()
    alerts = await st.alerts()
    assert [(a.source, a.step) for a in alerts] == [("telemetry:YL002", "imminent")]
    assert await st.engine.feeds.evaluation.step() is False  # evaluated once: nothing left
    assert len(await st.alerts()) == 1
