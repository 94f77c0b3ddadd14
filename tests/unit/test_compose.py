"""发布预警, pure parts: the form → draft → CAP 1.2 document that parses back and classifies
as composed; the area compaction; the joint texts; SMS length and segments; the two-person
rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warnd.cap.classify import classify, explicit_step
from warnd.cap.parser import parse_cap
from warnd.cap.writer import cap_document
from warnd.config import load_vocabulary
from warnd.config.compose import ComposeTextsError, compose_texts_from, load_compose_texts
from warnd.core.compose import (
    DraftErrors,
    choose_area,
    draft_message,
    fill_texts,
    needs_approval,
    read_draft,
    township_tree,
)
from warnd.core.domain import AlertStatus, Colour, Level, MsgType, RegionView, Step
from warnd.core.sms import sms_length
from warnd.core.targeting import resolve_area

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
VOCAB = load_vocabulary()
REGIONS = {r.code: r for r in [
    RegionView("431222", "沅陵县", Level.COUNTY, None),
    RegionView("431222100", "官庄镇", Level.TOWNSHIP, "431222"),
    RegionView("431222100200", "辰龙关村", Level.VILLAGE, "431222100"),
    RegionView("431222100201", "界亭驿村", Level.VILLAGE, "431222100"),
    RegionView("431222101", "马底驿乡", Level.TOWNSHIP, "431222"),
    RegionView("431222101300", "夏家村", Level.VILLAGE, "431222101"),
    RegionView("431222101301", "杨溪村", Level.VILLAGE, "431222101"),
    RegionView("431222101301001", "杨溪村一组", Level.GROUP, "431222101301"),
]}


def form(**kw: str) -> dict[str, str]:
    base = {"hazard": "rainstorm", "colour": "red", "step": "imminent", "headline": "沅陵县发布暴雨红色临灾预警",
            "description": "预计未来3小时内将出现特大暴雨。", "instruction": "请立即组织转移。", "hours": "6"}
    return {**base, **kw}


# --- SMS length ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "gsm7", 0, 0),
    ("a" * 160, "gsm7", 160, 1),
    ("a" * 161, "gsm7", 161, 2),
    ("a" * 306, "gsm7", 306, 2),
    ("a" * 307, "gsm7", 307, 3),
    ("[" * 80, "gsm7", 160, 1),  # extension characters count twice
    ("[" * 81, "gsm7", 162, 2),
    ("雨" * 70, "ucs2", 70, 1),
    ("雨" * 71, "ucs2", 71, 2),
    ("雨" * 134, "ucs2", 134, 2),
    ("雨" * 135, "ucs2", 135, 3),
    ("a" * 69 + "雨", "ucs2", 70, 1),  # one Chinese character makes the whole text UCS-2
    ("𠀀" * 35, "ucs2", 70, 1),  # outside the BMP: two UTF-16 units each
    ("𠀀" * 36, "ucs2", 72, 2),
])
def test_sms_length_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    got = sms_length(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)


def test_the_signature_counts() -> None:
    assert sms_length("雨" * 66).segments == 1
    assert sms_length("雨" * 66, signature="【沅陵应急】").segments == 2  # 66 + 6 = 72 > 70
    assert sms_length("hello", signature="【沅陵】").encoding == "ucs2"


# --- area ---------------------------------------------------------------------------------------
def test_tree_lists_townships_with_their_villages() -> None:
    tree = township_tree(REGIONS)
    assert [(t.name, [v.name for v in t.villages]) for t in tree] == [
        ("官庄镇", ["辰龙关村", "界亭驿村"]), ("马底驿乡", ["夏家村", "杨溪村"])]


def test_area_compacts_whole_townships_and_names_villages() -> None:
    # A township picked covers its villages; every village of a township picked is the township.
    area = choose_area(["431222100", "431222100200", "431222101300", "431222101301001", "nope"], REGIONS)
    assert area.codes == ("431222100", "431222101300")
    assert area.description == "官庄镇（全镇）、马底驿乡夏家村"
    assert choose_area(["431222101300", "431222101301"], REGIONS).codes == ("431222101",)
    assert choose_area([], REGIONS).codes == ()


# --- the draft and its CAP document -------------------------------------------------------------
def test_form_becomes_a_cap_document_that_ingests_as_composed() -> None:
    draft = read_draft(form(), ["431222100200", "431222101"], REGIONS, VOCAB.codes)
    msg = draft_message(draft, identifier="CONSOLE-1", sender="warnd-console@431222", sender_name="沅陵县防汛抗旱指挥部",
                        hazard_zh="暴雨", author="zhangwei", now=NOW)
    xml = cap_document(msg)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>') and b"urn:oasis:names:tc:emergency:cap:1.2" in xml
    parsed = parse_cap(xml)
    assert parsed == msg  # the document says exactly what was composed
    assert (parsed.sender, parsed.identifier, parsed.status, parsed.msg_type) == (
        "warnd-console@431222", "CONSOLE-1", AlertStatus.ACTUAL, MsgType.ALERT)
    assert parsed.note == "值班台编写：zhangwei"
    info = parsed.infos[0]
    assert classify(info, VOCAB) == ("rainstorm", Colour.RED)
    assert explicit_step(info) == Step.IMMINENT
    assert (info.event, info.severity, info.urgency) == ("暴雨红色预警", "Extreme", "Immediate")
    assert info.expires == NOW + timedelta(hours=6)
    assert info.areas[0].area_desc == "官庄镇辰龙关村、马底驿乡（全镇）"
    area = resolve_area(info.areas, REGIONS, "431222")
    assert {"431222100200", "431222101", "431222101300", "431222101301"} <= set(area.codes)
    assert "431222100201" not in area.codes  # the other village of 官庄镇 was not picked


@pytest.mark.parametrize(("hazard", "colour"), [(h, c) for h in ("rainstorm", "flash_flood", "gale", "geohazard")
                                                for c in Colour])
def test_every_hazard_and_colour_classifies_back(hazard: str, colour: Colour) -> None:
    draft = read_draft(form(hazard=hazard, colour=colour.value, step="warning"), ["431222100"], REGIONS, VOCAB.codes)
    msg = parse_cap(cap_document(draft_message(draft, identifier="X", sender="s", sender_name="县", hazard_zh="某",
                                               author="a", now=NOW)))
    assert classify(msg.infos[0], VOCAB) == (hazard, colour)
    assert explicit_step(msg.infos[0]) == Step.WARNING


def test_a_drill_is_an_exercise() -> None:
    draft = read_draft(form(drill="1"), ["431222100"], REGIONS, VOCAB.codes)
    msg = draft_message(draft, identifier="X", sender="s", sender_name="县", hazard_zh="暴雨", author="a", now=NOW)
    assert msg.status == AlertStatus.EXERCISE


def test_text_with_markup_is_escaped_not_injected() -> None:
    draft = read_draft(form(headline="暴雨<预警>&</headline><x>", instruction="]]><!--"), ["431222100"], REGIONS,
                       VOCAB.codes)
    msg = draft_message(draft, identifier="X", sender="s", sender_name="县", hazard_zh="暴雨", author="a", now=NOW)
    assert parse_cap(cap_document(msg)).infos[0].headline == "暴雨<预警>&</headline><x>"


def test_every_wrong_field_is_named_in_chinese() -> None:
    with pytest.raises(DraftErrors) as e:
        read_draft({"hazard": "meteor", "colour": "purple", "step": "soon", "headline": " ", "hours": "nan",
                    "instruction": ""}, ["999"], REGIONS, VOCAB.codes)
    assert set(e.value.errors) == {"hazard", "colour", "step", "area", "headline", "instruction", "hours"}
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in msg) for msg in e.value.errors.values())
    for hours in ("0", "73", "x", "inf"):
        with pytest.raises(DraftErrors) as e:
            read_draft(form(hours=hours), ["431222100"], REGIONS, VOCAB.codes)
        assert set(e.value.errors) == {"hours"}
    with pytest.raises(DraftErrors) as e:
        read_draft(form(headline="雨" * 101, description="雨" * 1001), ["431222100"], REGIONS, VOCAB.codes)
    assert set(e.value.errors) == {"headline", "description"}


# --- the two-person rule ------------------------------------------------------------------------
@pytest.mark.parametrize("colour", list(Colour))
@pytest.mark.parametrize("step", list(Step))
def test_red_or_imminent_needs_a_second_person(colour: Colour, step: Step) -> None:
    assert needs_approval(colour, step) == (colour == Colour.RED or step == Step.IMMINENT)


# --- joint texts --------------------------------------------------------------------------------
def test_joint_texts_fill_from_hazard_then_default() -> None:
    texts = load_compose_texts(None, VOCAB.codes)
    rain = fill_texts(texts, hazard="rainstorm", hazard_zh="暴雨", colour=Colour.RED, step_label="临灾预警",
                      sender="沅陵县防汛抗旱指挥部", area="官庄镇（全镇）", hours=6)
    assert rain.headline == "沅陵县防汛抗旱指挥部发布暴雨红色临灾预警"
    assert "官庄镇（全镇）" in rain.description and "6小时" in rain.description
    assert "转移" in rain.instruction
    gale = fill_texts(texts, hazard="gale", hazard_zh="大风", colour=Colour.BLUE, step_label="预报",
                      sender="县", area="某村", hours=12)
    assert gale.headline == "县发布大风蓝色预报" and gale.instruction == texts.default.guidance["blue"]
    for c in Colour:  # every colour has a 防御指引 for every hazard
        for h in VOCAB.codes:
            assert texts.for_hazard(h).guidance[c.value]


@pytest.mark.parametrize(("raw", "wrong"), [
    ({"default": {"headline": "{nope}", "description": "", "guidance": {c.value: "x" for c in Colour}}},
     "default.headline: uses unknown placeholder {nope}"),
    ({"default": {"headline": "", "description": "", "guidance": {"red": "x"}}}, "default.guidance: needs a text"),
    ({"default": {"headline": "", "description": "", "guidance": {c.value: "x" for c in Colour}},
      "hazards": {"meteor": {}}}, "hazards.meteor: unknown hazard"),
    ({"default": {"headline": "", "description": "", "guidance": {c.value: "x" for c in Colour}},
      "hazards": {"rainstorm": {"guidance": {"purple": "x"}}}}, "hazards.rainstorm.guidance.purple: unknown colour"),
])
def test_compose_toml_mistakes_are_refused_by_key(raw: dict[str, object], wrong: str) -> None:
    with pytest.raises(ComposeTextsError) as e:
        compose_texts_from(raw, "compose.toml", VOCAB.codes)
    assert f"compose.toml: {wrong}" in str(e.value)


def test_shipped_compose_toml_loads(tmp_path: Path) -> None:
    assert load_compose_texts(None, VOCAB.codes).hazards["rainstorm"].guidance["red"]
