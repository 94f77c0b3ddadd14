"""Stations speaking SL 651-2014 straight to warnd: the simulated station (devtools) sends real
frames over a real TCP socket (and UDP) to the gateway inside the running engine, on SQLite
and PostgreSQL. Confirmations, bad CRCs, unknown stations and wrong passwords, retransmissions,
the cumulative counter and its reset, 5-minute series, 加报 and station health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from devtools.simulators.sl651_station import Sl651Station, TcpLink, udp_exchange
from support.feeds_support import Stack, stack
from warnd.cap.sl651 import ADDED, BEIJING, EOT, TEST, TIMED, decode_frame, encode_frame
from warnd.db.models import Alert, TelemetryReading

RAIN = "0010100001"
LEVEL = "0010100002"
STATIONS = f"""
[defaults]
max_age_minutes = 30
sl651_password = "1234"

[stations.YL001]
name = "辰龙关雨量站"
area_desc = "官庄镇辰龙关村、桃坪村"
villages = ["431222100200", "431222100201"]
rain_1h = [20, 40]
sl651_address = "{RAIN}"

[stations.YL002]
name = "麻溪铺水位站"
area_desc = "麻溪铺镇麻溪铺村"
villages = ["431222101200"]
level_m = [3.5, 4.2]
sl651_address = "{LEVEL}"
sl651_password = "ABCD"
"""
NOW = datetime(2026, 7, 1, 10, 0, tzinfo=BEIJING)  # the stack's T0


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(db_url, tmp_path, stations=STATIONS, sl651=True) as s:
        yield s


async def settled(st: Stack) -> None:
    """Every frame received so far evaluated (the gateway confirms first, evaluates after)."""
    assert st.engine.feeds is not None and st.engine.feeds.sl651 is not None
    await st.engine.feeds.sl651.settle()


def port(st: Stack, kind: str = "tcp") -> int:
    assert st.engine.feeds is not None and st.engine.feeds.sl651 is not None
    return st.engine.feeds.sl651.tcp_port if kind == "tcp" else st.engine.feeds.sl651.udp_port


async def rain_rows(st: Stack, station: str = "YL001") -> list[tuple[datetime, float]]:
    async with st.engine.db.session() as s:
        rows = (await s.exec(select(TelemetryReading.at, TelemetryReading.value).where(
            TelemetryReading.station == station, TelemetryReading.metric == "rain_mm").order_by(
            col(TelemetryReading.at)))).all()
    return [(a, v) for a, v in rows]


async def health(st: Stack) -> dict:
    r = await st.http.get("/api/v1/feeds", headers=st.auth)
    assert r.status == 200
    return next(f for f in (await r.json())["feeds"] if f["name"] == "sl651")


@pytest.mark.parametrize("mode", ["hex", "ascii"])
async def test_a_storm_over_tcp_raises_the_warning(st: Stack, mode: str) -> None:
    station = Sl651Station(RAIN, "1234", mode=mode)
    station.pt = 100.0  # the counter has run all season
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        # The first report is the counter's baseline; PJ gives its own interval's rain.
        answers = [await link.report(station.report(NOW - timedelta(minutes=20 - 10 * i), rain_mm=mm))
                   for i, mm in enumerate([4.0, 8.0, 12.0])]
    finally:
        await link.close()
    assert [a.serial for a in answers] == [1, 2, 3]
    assert all(not a.upstream and a.end == EOT and a.station == RAIN and a.function == TIMED for a in answers)
    assert [v for _t, v in await rain_rows(st)] == [4.0, 8.0, 12.0]
    await settled(st)
    [alert] = await st.alerts()
    assert alert.source == "telemetry:YL001" and alert.hazard == "flash_flood" and alert.step == "warning"
    h = await health(st)
    row = next(r for r in h["stations"] if r["station"] == "YL001")
    assert row["frames"] == 3 and row["battery_v"] == 12.6 and row["bad_crc"] == 0
    assert row["last_function"] == "遥测站定时报"


async def test_counter_differences_and_reset(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234", mode="ascii")
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        station.pt = 9990.0
        await link.report(station.report(NOW - timedelta(minutes=25), rain_mm=2.0, pj=False))  # baseline 9992.0
        await link.report(station.report(NOW - timedelta(minutes=15), rain_mm=3.5, pj=False))  # 9995.5: +3.5
        station.pt = 0.0  # the counter wrapped / was reset at the station
        await link.report(station.report(NOW - timedelta(minutes=5), rain_mm=1.5, pj=False))  # 1.5: rain since reset
    finally:
        await link.close()
    rows = await rain_rows(st)
    assert [v for _t, v in rows] == [3.5, 1.5]  # nothing for the baseline, no negative rain


async def test_a_late_frame_is_not_counted_twice(st: Stack) -> None:
    early, late = Sl651Station(RAIN, "1234"), Sl651Station(RAIN, "1234")
    early.pt, late.pt = 50.0, 50.0
    late.serial = 100
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        await link.report(early.report(NOW - timedelta(minutes=30), rain_mm=0.0, pj=False))  # PT 50.0
        await link.report(early.report(NOW - timedelta(minutes=10), rain_mm=10.0, pj=False))  # PT 60.0: +10
        # A frame observed in between (PT 55.0) arrives after: its rain is inside the +10 already.
        await link.report(late.report(NOW - timedelta(minutes=20), rain_mm=5.0))
    finally:
        await link.close()
    assert sum(v for _t, v in await rain_rows(st)) == 10.0


async def test_bad_crc_unknown_station_and_wrong_password_are_refused_unconfirmed(st: Stack) -> None:
    good = Sl651Station(RAIN, "1234")
    stranger = Sl651Station("0099999999", "1234")
    wrong = Sl651Station(LEVEL, "1234")  # YL002's password is ABCD
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        bad = bytearray(good.report(NOW - timedelta(minutes=5), rain_mm=9.0))
        bad[-5] ^= 0x01  # one bit of the last element
        await link.send(bytes(bad))
        await link.send(stranger.report(NOW - timedelta(minutes=5), rain_mm=9.0))
        await link.send(wrong.report(NOW - timedelta(minutes=5), level_m=3.0))
        # Frames are handled in order on a connection: the first answer is the good frame's.
        answer = await link.report(good.report(NOW - timedelta(minutes=4), rain_mm=1.0))
    finally:
        await link.close()
    assert answer.serial == 2 and answer.station == RAIN
    assert [v for _t, v in await rain_rows(st)] == [1.0]  # the corrupted 9.0 never counted
    assert await rain_rows(st, "YL002") == []
    h = await health(st)
    assert h["bad_crc"] == 1 and h["unknown_station_frames"] == 1
    rows = {r["station"]: r for r in h["stations"]}
    assert rows["YL001"]["bad_crc"] == 1 and rows["YL002"]["refused"] == 1
    kinds = [e.data.get("reason") for e in await st.events("sl651_refused")]
    assert "unknown station" in kinds and "wrong password" in kinds
    assert len(await st.events("sl651_bad_crc")) == 1


async def test_a_retransmission_is_confirmed_again_and_counted_once(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    frame = station.report(NOW - timedelta(minutes=5), rain_mm=7.5)
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        first = await link.report(frame)
        again = await link.report(frame)  # the station missed our confirmation
    finally:
        await link.close()
    assert first.serial == again.serial == 1
    assert [v for _t, v in await rain_rows(st)] == [7.5]
    row = next(r for r in (await health(st))["stations"] if r["station"] == "YL001")
    assert row["retransmissions"] == 1


async def test_five_minute_series_and_a_threshold_report(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        drp = [0.5, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 0.0, 0.0, 0.0, 0.0]
        frame = station.report(NOW - timedelta(minutes=55), function=ADDED, drp=drp, sent=NOW)
        answer = await link.report(frame)
    finally:
        await link.close()
    assert answer.function == ADDED
    rows = await rain_rows(st)
    assert len(rows) == 12 and sum(v for _t, v in rows) == pytest.approx(21.0)
    # Value i is the 5 minutes ending at the observation time + 5·i minutes.
    assert [t for t, _v in rows] == [(NOW - timedelta(minutes=55 - 5 * i)).astimezone(rows[0][0].tzinfo)
                                     for i in range(12)]
    await settled(st)
    alerts = await st.alerts()  # 21 mm in the hour ≥ 20: the thresholds decided, not the 33 itself
    assert len(alerts) == 1 and alerts[0].step == "warning"


async def test_a_threshold_report_below_the_threshold_raises_nothing(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        await link.report(station.report(NOW - timedelta(minutes=5), function=ADDED, rain_mm=3.0))
    finally:
        await link.close()
    await settled(st)
    assert await st.count(Alert) == 0


async def test_test_reports_are_confirmed_not_evaluated(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        answer = await link.report(station.report(NOW - timedelta(minutes=5), function=TEST, rain_mm=30.0))
    finally:
        await link.close()
    assert answer.function == TEST
    assert await rain_rows(st) == []


async def test_udp_and_water_level(st: Stack) -> None:
    station = Sl651Station(LEVEL, "ABCD", category="H", mode="ascii")
    answer = await udp_exchange("127.0.0.1", port(st, "udp"), station.report(NOW - timedelta(minutes=2),
                                                                             level_m=3.8, voltage=11.9))
    assert answer.serial == 1 and answer.station == LEVEL and answer.password == "ABCD"
    async with st.engine.db.session() as s:
        levels = (await s.exec(select(TelemetryReading.value).where(TelemetryReading.station == "YL002",
                                                                    TelemetryReading.metric == "level_m"))).all()
    assert list(levels) == [3.8]
    await settled(st)
    [alert] = await st.alerts()
    assert alert.source == "telemetry:YL002"
    row = next(r for r in (await health(st))["stations"] if r["station"] == "YL002")
    assert row["battery_v"] == 11.9


async def test_multi_packet_message(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    whole = decode_frame(station.report(NOW - timedelta(minutes=5), rain_mm=6.0))
    packets = station.packets(TIMED, whole.body, size=10)
    assert len(packets) > 2
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        answers = [await link.report(p) for p in packets]
    finally:
        await link.close()
    assert [a.end for a in answers[:-1]] == [0x06] * (len(packets) - 1)  # ACK: send the next packet
    assert answers[-1].end == EOT
    assert [v for _t, v in await rain_rows(st)] == [6.0]


async def test_noise_on_the_line_does_not_stop_the_connection(st: Stack) -> None:
    station = Sl651Station(RAIN, "1234")
    link = await TcpLink.open("127.0.0.1", port(st))
    try:
        await link.send(b"AT+CSQ\r\n")  # a modem's chatter
        answer = await link.report(station.report(NOW - timedelta(minutes=5), rain_mm=1.0))
    finally:
        await link.close()
    assert answer.serial == 1
    assert encode_frame(answer)  # a well-formed downstream frame
