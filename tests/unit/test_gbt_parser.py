"""GB/T 35965.1-2018 documents (the national platform's format) read into CapMessage, on the
samples in tests/data/gbt (see its README for what each one is), on hand-made variations,
and on arbitrary bytes: the reader may refuse anything, but only with its own CapError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warnd.cap import CapError, parse_alert, parse_cap
from warnd.cap.classify import classify, hazard_conflict
from warnd.cap.gbt import FORMAT, parse_references, parse_time
from warnd.config.vocabulary import load_vocabulary
from warnd.core.domain import Colour, MsgType

DATA = Path(__file__).resolve().parents[1] / "data" / "gbt"
CST = timezone(timedelta(hours=8))
VOCAB = load_vocabulary()


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_henan_gale_update_as_the_issue_describes_it() -> None:
    msg = parse_alert(sample("henan_gale_update.xml"))
    assert msg.format == FORMAT
    assert msg.sender == "41000041600000" and msg.identifier == "41000041600000_20200205105119"
    assert msg.sent == datetime(2020, 2, 5, 10, 51, 19, tzinfo=CST)
    assert msg.msg_type == MsgType.UPDATE
    # The chain's FIRST message, sender taken from the national identifier.
    assert [(s, i) for s, i, _t in msg.references] == [("41000041600000", "41000041600000_20200204160000")]
    assert msg.references[0][2] == datetime(2020, 2, 4, 16, 0, tzinfo=CST)
    info = msg.infos[0]
    assert info.event_codes == (("eventType", "11B06"),)
    assert info.severity == "Minor" and ("colour", "blue") in info.parameters
    assert info.expires is None and info.onset is None  # <expires/> and 待定
    assert info.sender_name == "河南省气象台"
    area = info.areas[0]
    assert area.polygons == ()
    assert [v for _n, v in area.geocodes] == ["410100000000", "410200000000", "411400000000"]
    assert area.area_desc == "郑州市,开封市,商丘市"
    assert dict(msg.channel_texts).keys() == {"SMS", "SPEAKER", "LED"}
    assert dict(msg.channel_texts)["SMS"].startswith("【河南省气象台】")
    assert classify(info, VOCAB) == ("gale", Colour.BLUE)


def test_the_same_document_is_refused_by_the_strict_cap_parser() -> None:
    # The first user's experience: a CAP-only reader says "no namespace".
    with pytest.raises(CapError) as e:
        parse_cap(sample("henan_gale_update.xml"))
    assert e.value.field == "xmlns"


@pytest.mark.parametrize("name,hazard,colour,msg_type", [
    ("henan_gale_alert.xml", "gale", Colour.BLUE, MsgType.ALERT),
    ("henan_gale_cancel.xml", "gale", Colour.BLUE, MsgType.CANCEL),
    ("yuanling_rain_alert.xml", "rainstorm", Colour.YELLOW, MsgType.ALERT),
    ("yuanling_rain_update.xml", "rainstorm", Colour.ORANGE, MsgType.UPDATE),
    ("yuanling_rain_lifted_text.xml", "rainstorm", Colour.ORANGE, MsgType.UPDATE),
])
def test_samples(name: str, hazard: str, colour: Colour, msg_type: MsgType) -> None:
    msg = parse_alert(sample(name))
    assert msg.msg_type == msg_type
    assert classify(msg.infos[0], VOCAB) == (hazard, colour)


def test_code_and_text_disagree_the_text_is_trusted() -> None:
    info = parse_alert(sample("yuanling_code_conflict.xml")).infos[0]
    assert info.event_codes == (("eventType", "11B06"),)  # 大风
    assert classify(info, VOCAB)[0] == "rainstorm"  # the headline says 暴雨
    assert hazard_conflict(info, VOCAB) == ("gale", "rainstorm")


def test_code_agreeing_with_one_of_several_words_is_no_conflict() -> None:
    # 地质灾害气象风险预警 "受强降雨影响": the text mentions rain first, the code is right.
    doc = sample("yuanling_rain_alert.xml").replace(b"11B03", b"11B37").replace(
        "沅陵县气象台发布暴雨黄色预警[III级/较重]".encode(), "受强降雨影响，发布地质灾害气象风险黄色预警".encode())
    info = parse_alert(doc).infos[0]
    assert hazard_conflict(info, VOCAB) is None
    assert classify(info, VOCAB)[0] == "geohazard"


@pytest.mark.parametrize("code,hazard", [
    ("11B01", "typhoon"), ("11B03", "rainstorm"), ("11B04", "snowstorm"), ("11B05", "cold_wave"),
    ("11B06", "gale"), ("11B07", "sandstorm"), ("11B09", "heat"), ("11B14", "lightning"), ("11B15", "hail"),
    ("11B16", "frost"), ("11B17", "fog"), ("11B19", "haze"), ("11B20", "gale"), ("11B21", "road_icing"),
    ("11B22", "drought"), ("11B25", "forest_fire"), ("11B37", "geohazard"), ("11B38", "rainstorm"),
    ("11A01", "flood"), ("11A02", "waterlogging"), ("11A51", "flash_flood"), ("11D01", "geohazard"),
    ("11D02", "geohazard"),
])
def test_national_codes_alone_classify(code: str, hazard: str) -> None:
    doc = sample("yuanling_rain_alert.xml").replace(b"11B03", code.encode()).replace(
        "沅陵县气象台发布暴雨黄色预警[III级/较重]".encode(), "沅陵县气象台发布预警[III级/较重]".encode())
    info = parse_alert(doc).infos[0]
    assert classify(info, VOCAB) == (hazard, Colour.YELLOW)


@pytest.mark.parametrize("level,colour", [("IV级/一般", Colour.BLUE), ("III级/较重", Colour.YELLOW),
                                          ("II级/严重", Colour.ORANGE), ("I级/特别重大", Colour.RED)])
def test_headline_level_alone_gives_the_colour(level: str, colour: Colour) -> None:
    doc = sample("yuanling_rain_alert.xml").replace(b"<severity>Yellow</severity>", b"<severity/>").replace(
        "沅陵县气象台发布暴雨黄色预警[III级/较重]".encode(), f"沅陵县气象台发布暴雨预警[{level}]".encode())
    assert classify(parse_alert(doc).infos[0], VOCAB)[1] == colour


def test_a_bare_level_number_is_never_a_colour() -> None:
    doc = sample("yuanling_rain_alert.xml").replace(b"<severity>Yellow</severity>", b"<severity>1</severity>") \
        .replace("黄色".encode(), b"").replace("[III级/较重]".encode(), b"")
    info = parse_alert(doc).infos[0]
    assert ("severity", "1") in info.parameters
    assert classify(info, VOCAB)[1] is None


@pytest.mark.parametrize("text,expected", [
    ("2020-02-05 10:51:19+08:00", datetime(2020, 2, 5, 10, 51, 19, tzinfo=CST)),
    ("2020-02-05T10:51:19+08:00", datetime(2020, 2, 5, 10, 51, 19, tzinfo=CST)),
    ("2020-02-05 10:51:19+0800", datetime(2020, 2, 5, 10, 51, 19, tzinfo=CST)),
    ("2020-02-05 10:51:19", datetime(2020, 2, 5, 10, 51, 19, tzinfo=CST)),  # Beijing time
    ("2020-02-05 02:51:19Z", datetime(2020, 2, 5, 2, 51, 19, tzinfo=UTC)),
    ("2020-2-5 10:51", datetime(2020, 2, 5, 10, 51, tzinfo=CST)),
])
def test_times(text: str, expected: datetime) -> None:
    assert parse_time(text, "t") == expected


@pytest.mark.parametrize("text", ["2020-02-30 10:00:00+08:00", "yesterday", "2020-02-05 25:00:00", ""])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(CapError):
        parse_time(text, "t")


def test_references_in_every_shape() -> None:
    sent = datetime(2026, 7, 1, 10, 0, tzinfo=CST)
    refs = parse_references(
        "43122241600000,43122241600000_20260701095800,2026-07-01 09:58:00+08:00 "
        "43000041600000_20260701090000,OWN-7", "43122241600000", sent, "r")
    assert refs == (
        ("43122241600000", "43122241600000_20260701095800", datetime(2026, 7, 1, 9, 58, tzinfo=CST)),
        ("43000041600000", "43000041600000_20260701090000", datetime(2026, 7, 1, 9, 0, tzinfo=CST)),
        ("43122241600000", "OWN-7", sent),
    )


def test_an_update_without_references_is_refused() -> None:
    doc = sample("henan_gale_update.xml").replace(b"<references>41000041600000_20200204160000</references>", b"")
    with pytest.raises(CapError) as e:
        parse_alert(doc)
    assert e.value.field == "alert.references"


def test_several_errors_are_reported_together() -> None:
    doc = sample("henan_gale_alert.xml").replace(b"2020-02-04 16:00:00+08:00</sendTime>", b"soon</sendTime>") \
        .replace(b"<msgType>Alert</msgType>", b"<msgType>Shout</msgType>") \
        .replace(b"410100000000,", b"4101X,")
    with pytest.raises(CapError) as e:
        parse_alert(doc)
    fields = {f for f, _d in e.value.errors}
    assert {"alert.sendTime", "alert.msgType", "info[0].area[0].geocode[0]"} <= fields


def test_sender_code_falls_back_on_the_national_identifier() -> None:
    doc = sample("henan_gale_alert.xml").replace(b"<senderCode>41000041600000</senderCode>", b"")
    assert parse_alert(doc).sender == "41000041600000"
    doc = doc.replace(b"41000041600000_20200204160000</identifier>", b"HN-1</identifier>")
    with pytest.raises(CapError) as e:
        parse_alert(doc)
    assert e.value.field == "alert.senderCode"


def test_cap_documents_still_go_to_the_cap_parser() -> None:
    cap = (Path(__file__).resolve().parents[1] / "data" / "cap" / "cma_rainstorm_geocode.xml").read_bytes()
    assert parse_alert(cap).format == "cap"
    with pytest.raises(CapError) as e:
        parse_alert(b'<alert xmlns="urn:example:other"><identifier>x</identifier></alert>')
    assert e.value.field == "xmlns"


def test_hostile_documents_are_refused_like_cap() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY a "aaaa">]><alert><identifier>&a;</identifier></alert>'
    with pytest.raises(CapError):
        parse_alert(bomb)
    with pytest.raises(CapError) as e:
        parse_alert(b"x" * (5 * 1024 * 1024 + 1))
    assert e.value.field == "size"


SAMPLE = sample("henan_gale_update.xml")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_caperror(data: bytes) -> None:
    try:
        parse_alert(data)
    except CapError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(SAMPLE) - 1), st.binary(min_size=1, max_size=8),
       st.integers(min_value=0, max_value=8))
def test_mutated_samples_raise_only_caperror(at: int, insert: bytes, cut: int) -> None:
    data = SAMPLE[:at] + insert + SAMPLE[at + cut:]
    try:
        msg = parse_alert(data)
    except CapError:
        return
    assert msg.sender and msg.identifier and msg.sent.tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_in_every_gbt_field_raises_only_caperror(text: str) -> None:
    from xml.sax.saxutils import escape

    t = escape("".join(c for c in text if c.isprintable())).encode()
    for tag in (b"sendTime", b"references", b"geocode", b"severity", b"expires", b"msgType", b"identifier"):
        start = SAMPLE.index(b"<" + tag)
        end = SAMPLE.index(b">", SAMPLE.index(b"</" + tag if b"</" + tag in SAMPLE else b"/>", start))
        doc = SAMPLE[:start] + b"<" + tag + b">" + t + b"</" + tag + b">" + SAMPLE[end + 1:]
        try:
            parse_alert(doc)
        except CapError:
            pass


def test_a_composed_warning_keeps_its_stated_hazard() -> None:
    # The duty room chose 山洪 for a text about 暴雨: an operator's decision, not a conflict.
    from warnd.cap.model import CapInfo

    info = CapInfo(categories=("Met",), event="暴雨", urgency="Expected", severity="Moderate", certainty="Likely",
                   headline="暴雨黄色预警", event_codes=(("warnd:hazard", "flash_flood"),))
    assert classify(info, VOCAB)[0] == "flash_flood" and hazard_conflict(info, VOCAB) is None
