"""The SL 651-2014 codec: published frames as fixed vectors (tests/data/sl651/vectors.toml
says where each came from), generated frames round-tripping in both modes, the CRC catching
every corrupted byte, stream splitting, confirmations, and arbitrary bytes refused only
with the codec's own error."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.cap.sl651 import (
    BEIJING,
    EOT,
    ESC,
    ETB,
    ETX,
    CrcError,
    Frame,
    Observation,
    Report,
    Sl651Error,
    confirmation,
    crc16_modbus,
    decode_frame,
    decode_report,
    encode_frame,
    encode_report_body,
    split_stream,
)

VECTORS: dict[str, dict[str, Any]] = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "data" / "sl651" / "vectors.toml").read_text(encoding="utf-8"))


def vector(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"].replace(" ", ""))


def test_crc16_modbus_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue's check value for CRC-16/MODBUS


@pytest.mark.parametrize("name", ["timed_report_pj_z_vt", "hourly_report_drp_pt_z", "clock_answer_no_elements"])
def test_published_frames(name: str) -> None:
    v = VECTORS[name]
    frame = decode_frame(vector(name))
    assert frame.mode == "hex" and frame.upstream and frame.end == ETX
    assert frame.function == v["function"] and frame.station == v["station"] and frame.serial == v["serial"]
    report = decode_report(frame)
    assert report.serial == v["serial"] and report.station == v["station"]
    for element in ("PJ", "PT", "Z", "VT"):
        if element in v:
            assert report.value(element) == pytest.approx(v[element]), element
    # Encoding the decoded frame gives the published bytes back, CRC high byte first.
    assert encode_frame(frame) == vector(name)


def test_published_hourly_frame_details() -> None:
    report = decode_report(decode_frame(vector("hourly_report_drp_pt_z")))
    drp = next(o for o in report.observations if o.drp)
    assert drp.at == datetime(2022, 6, 21, 11, 5, tzinfo=BEIJING)
    assert drp.drp == (0.0, 0.0, 0.5) + (0.0,) * 9
    assert report.sent == datetime(2022, 6, 21, 12, 1, 10, tzinfo=BEIJING)
    assert "series" in report.skipped and "DRZ1" in report.skipped


def test_published_frame_with_a_wrong_crc_is_refused() -> None:
    with pytest.raises(CrcError) as e:
        decode_frame(vector("bad_crc"))
    assert (e.value.got, e.value.want) == (0xEAFC, 0x2730)


def test_ascii_report_as_stations_send_it() -> None:
    body = b"0001260909080012 ST 5010123456 H TT 2609090800 Z 6.38 PT 125.5 VT 12.45"
    raw = encode_frame(Frame("ascii", 1, "5010123456", "1234", 0x32, True, body, ETX))
    assert raw[:1] == b"\x01" and raw[-5:-4] == b"\x03"
    assert int(raw[-4:], 16) == crc16_modbus(raw[:-4])
    report = decode_report(decode_frame(raw))
    assert report.station == "5010123456" and report.category == "H"
    assert report.observations[0].at == datetime(2026, 9, 9, 8, 0, tzinfo=BEIJING)
    assert report.value("Z") == 6.38 and report.value("PT") == 125.5 and report.value("VT") == 12.45


def test_confirmation_answers_with_the_serial_downstream() -> None:
    frame = decode_frame(vector("timed_report_pj_z_vt"))
    now = datetime(2020, 7, 24, 17, 24, 0, tzinfo=BEIJING)
    answer = decode_frame(confirmation(frame, now))
    assert not answer.upstream and answer.end == EOT and answer.function == 0x32
    assert answer.station == "0010100001" and answer.centre == 1 and answer.password == "A000"
    assert answer.serial == 12 and answer.body[2:] == bytes.fromhex("200724172400")
    raw = confirmation(frame, now, end=ESC)
    assert raw[2:7] == bytes.fromhex("0010100001") and raw[7] == 1  # station before centre downstream
    assert raw[11] & 0x80  # downstream flag


def test_stream_splitting_resynchronises_after_noise() -> None:
    a, b = vector("timed_report_pj_z_vt"), vector("clock_answer_no_elements")
    frames, rest, skipped = split_stream(b"\x00garbage" + a + b + a[:9])
    assert frames == [a, b] and rest == a[:9] and skipped == 8
    frames, rest, _ = split_stream(rest + a[9:])
    assert frames == [a] and rest == b""


def test_multi_packet_header() -> None:
    frame = Frame("hex", 1, "0010100001", "A000", 0x31, True, b"\x00\x01" + bytes(6), ETB, packet=(3, 1))
    again = decode_frame(encode_frame(frame))
    assert again.packet == (3, 1) and again.end == ETB
    frame = Frame("ascii", 1, "0010100001", "A000", 0x31, True, b"0001260909080012", ETB, packet=(2, 2))
    assert decode_frame(encode_frame(frame)).packet == (2, 2)


# -- generated frames ---------------------------------------------------------------------------

stations = st.text("0123456789", min_size=10, max_size=10)
times = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31)).map(
    lambda t: t.replace(second=0, microsecond=0, tzinfo=BEIJING))
tenths = st.integers(min_value=0, max_value=99999).map(lambda n: n / 10)
levels = st.integers(min_value=-99999, max_value=999999).map(lambda n: n / 1000)


@st.composite
def reports(draw: st.DrawFn) -> Report:
    sent = draw(times)
    obs = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        values: dict[str, float | None] = {}
        if draw(st.booleans()):
            values["PJ"] = draw(tenths)
        if draw(st.booleans()):
            values["PT"] = draw(tenths)
        if draw(st.booleans()):
            values["Z"] = draw(levels)
        values["VT"] = draw(st.integers(min_value=0, max_value=9999)) / 100
        drp = tuple(draw(st.lists(st.integers(min_value=0, max_value=254).map(lambda n: n / 10), min_size=12,
                                  max_size=12))) if draw(st.booleans()) else ()
        obs.append(Observation(draw(times), values, drp))
    return Report(draw(st.integers(min_value=0, max_value=0xFFFF)), sent, draw(stations),
                  draw(st.sampled_from("PHK")), tuple(obs))


@settings(max_examples=200, deadline=None)
@given(reports(), st.sampled_from(["hex", "ascii"]), st.sampled_from([0x31, 0x32, 0x33, 0x34]))
def test_encode_decode_round_trip(report: Report, mode: str, function: int) -> None:
    body = encode_report_body(report, mode)
    frame = Frame(mode, 1, report.station, "1234", function, True, body, ETX)
    raw = encode_frame(frame)
    again = decode_frame(raw)
    assert again == frame
    decoded = decode_report(again)
    assert decoded.serial == report.serial and decoded.station == report.station
    assert decoded.sent == report.sent.replace(second=report.sent.second)
    assert len(decoded.observations) == len(report.observations)
    for got, want in zip(decoded.observations, report.observations, strict=True):
        assert got.at == want.at and got.drp == pytest.approx(want.drp)
        assert got.values == pytest.approx(want.values)


@settings(max_examples=300, deadline=None)
@given(reports(), st.sampled_from(["hex", "ascii"]), st.data())
def test_any_corrupted_byte_is_caught_by_the_crc(report: Report, mode: str, data: st.DataObject) -> None:
    raw = encode_frame(Frame(mode, 1, report.station, "1234", 0x32, True, encode_report_body(report, mode), ETX))
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    bad = raw[:at] + bytes([raw[at] ^ flip]) + raw[at + 1:]
    if at < (1 if mode == "ascii" else 2):
        with pytest.raises(Sl651Error):  # the start byte itself: not a frame at all
            decode_frame(bad)
        return
    with pytest.raises(Sl651Error) as e:
        decode_frame(bad)
    assert e.value.field == "crc"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_codec_error(data: bytes) -> None:
    for candidate in (data, b"\x7e\x7e" + data, b"\x01" + data):
        try:
            decode_report(decode_frame(candidate))
        except Sl651Error:
            pass
        split_stream(candidate)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["hex", "ascii"]))
def test_arbitrary_bodies_with_a_good_crc_raise_only_the_codec_error(body: bytes, mode: str) -> None:
    try:
        frame = decode_frame(encode_frame(Frame(mode, 1, "0010100001", "A000", 0x32, True, body, ETX)))
    except Sl651Error:
        return
    try:
        decode_report(frame)
    except Sl651Error:
        pass
