from __future__ import annotations

from pathlib import Path

import pytest

from warnd.cap import CapInfo, Vocabulary, classify, explicit_step, parse_cap
from warnd.cap.classify import OTHER
from warnd.config import VocabularyError, load_vocabulary
from warnd.core.domain import Colour, Step

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


def mk(
    event: str,
    *,
    severity: str = "Unknown",
    headline: str | None = None,
    event_codes: tuple[tuple[str, str], ...] = (),
    parameters: tuple[tuple[str, str], ...] = (),
) -> CapInfo:
    return CapInfo(
        categories=("Met",),
        event=event,
        urgency="Expected",
        severity=severity,
        certainty="Likely",
        headline=headline,
        event_codes=event_codes,
        parameters=parameters,
    )


def test_shipped_vocabulary_has_every_required_hazard(vocab: Vocabulary) -> None:
    assert set(vocab.codes) == {
        "rainstorm", "lightning", "gale", "hail", "heat", "cold_wave", "fog", "road_icing",
        "snowstorm", "drought", "frost", "haze", "sandstorm", "typhoon", "flood",
        "flash_flood", "geohazard", "waterlogging", "forest_fire", "other",
    }  # fmt: skip
    assert vocab.label("road_icing") == "道路结冰"
    assert vocab.label("nope") == "nope"


@pytest.mark.parametrize(
    ("event", "hazard", "colour"),
    [
        ("暴雨黄色预警", "rainstorm", Colour.YELLOW),
        ("雷电黄色预警", "lightning", Colour.YELLOW),
        ("大风蓝色预警", "gale", Colour.BLUE),
        ("雷雨大风橙色预警", "gale", Colour.ORANGE),
        ("冰雹红色预警", "hail", Colour.RED),
        ("高温橙色预警", "heat", Colour.ORANGE),
        ("寒潮蓝色预警", "cold_wave", Colour.BLUE),
        ("大雾红色预警", "fog", Colour.RED),
        ("道路结冰黄色预警", "road_icing", Colour.YELLOW),
        ("暴雪橙色预警", "snowstorm", Colour.ORANGE),
        ("干旱红色预警", "drought", Colour.RED),
        ("霜冻蓝色预警", "frost", Colour.BLUE),
        ("霾黄色预警", "haze", Colour.YELLOW),
        ("沙尘暴红色预警", "sandstorm", Colour.RED),
        ("台风蓝色预警", "typhoon", Colour.BLUE),
        ("洪水黄色预警", "flood", Colour.YELLOW),
        ("山洪灾害红色预警", "flash_flood", Colour.RED),
        ("地质灾害气象风险橙色预警", "geohazard", Colour.ORANGE),
        ("Rainstorm Red Warning", "rainstorm", Colour.RED),
        ("Heavy Rain Warning", "rainstorm", None),
        ("Flash Flood Warning", "flash_flood", None),
        ("FLOOD WATCH", "flood", None),
        ("Severe Thunderstorm Warning", "lightning", None),
        ("Dense Fog Advisory", "fog", None),
        ("Ｈｅａｔ　Ｗａｖｅ", "heat", None),  # full-width, as pasted from a Chinese IME
        ("Wheat rust notice", OTHER, None),  # "heat" only as a whole word
        ("森林火险橙色预警", "forest_fire", Colour.ORANGE),  # 11B25 in the vocabulary since issue 13
        ("火山灰橙色预警", OTHER, Colour.ORANGE),
        ("Homeland Security Advisory", OTHER, None),
    ],
)
def test_event_text(vocab: Vocabulary, event: str, hazard: str, colour: Colour | None) -> None:
    assert classify(mk(event), vocab) == (hazard, colour)


def test_event_code_beats_event_text(vocab: Vocabulary) -> None:
    info = mk("气象灾害预警", event_codes=(("预警类型", "地质灾害"),))
    assert classify(info, vocab)[0] == "geohazard"
    info = mk("暴雨预警", event_codes=(("warnd", "FLASH_FLOOD"),))
    assert classify(info, vocab)[0] == "flash_flood"


def test_unknown_event_code_falls_back_to_text(vocab: Vocabulary) -> None:
    info = mk("暴雪黄色预警", event_codes=(("SAME", "WSW"),))
    assert classify(info, vocab)[0] == "snowstorm"


def test_headline_used_when_event_is_generic(vocab: Vocabulary) -> None:
    info = mk("气象预警", headline="沅陵县气象台发布大雾橙色预警信号")
    assert classify(info, vocab) == ("fog", Colour.ORANGE)


def test_leftmost_keyword_wins(vocab: Vocabulary) -> None:
    assert classify(mk("暴雨诱发山洪灾害预警"), vocab)[0] == "rainstorm"
    assert classify(mk("山洪灾害预警（暴雨）"), vocab)[0] == "flash_flood"


@pytest.mark.parametrize(
    ("name", "value", "colour"),
    [
        ("color", "Yellow", Colour.YELLOW),
        ("Colour", "RED", Colour.RED),
        ("预警级别", "橙色", Colour.ORANGE),
        ("预警级别", "橙", Colour.ORANGE),
        ("预警级别", "黄色预警", Colour.YELLOW),
        ("预警级别", "Ⅰ级", Colour.RED),  # U+2160 Roman numeral
        ("预警级别", "II级", Colour.ORANGE),
        ("warningLevel", "III", Colour.YELLOW),
        ("warningLevel", "IV", Colour.BLUE),
        ("warningLevel", "Level IV", Colour.BLUE),
        ("WARNINGLEVEL", "Orange Warning", Colour.ORANGE),
        ("预警级别", "四级", Colour.BLUE),
        ("预警级别", "特别严重", Colour.RED),
    ],
)
def test_colour_parameter(vocab: Vocabulary, name: str, value: str, colour: Colour) -> None:
    # The event text says blue and the severity says Extreme: the parameter wins over both.
    info = mk("暴雨蓝色预警", severity="Extreme", parameters=((name, value),))
    assert classify(info, vocab) == ("rainstorm", colour)


def test_unrecognised_colour_parameter_falls_through(vocab: Vocabulary) -> None:
    info = mk("暴雨蓝色预警", parameters=(("预警级别", "3"), ("color", "purple")))
    assert classify(info, vocab)[1] is Colour.BLUE


def test_unrelated_parameter_ignored(vocab: Vocabulary) -> None:
    info = mk("Homeland Security Advisory", parameters=(("HSAS", "RED"),), severity="Minor")
    assert classify(info, vocab)[1] is Colour.BLUE


def test_colour_from_headline(vocab: Vocabulary) -> None:
    info = mk("暴雨预警", headline="沅陵县气象台发布暴雨红色预警信号")
    assert classify(info, vocab)[1] is Colour.RED


def test_several_colours_take_the_highest(vocab: Vocabulary) -> None:
    info = mk("暴雨预警", headline="沅陵县气象台将暴雨黄色预警信号升级为橙色")
    assert classify(info, vocab)[1] is Colour.ORANGE


def test_colour_words_need_word_edges(vocab: Vocabulary) -> None:
    # "red" inside "reduced", "iii级" not read as "ii级"/"i级", no colour from 红旗村.
    assert classify(mk("Rainfall reduced"), vocab)[1] is None
    assert classify(mk("暴雨Ⅲ级预警"), vocab)[1] is Colour.YELLOW
    assert classify(mk("红旗村暴雨预警"), vocab)[1] is None
    assert classify(mk("阵风十一级大风预警"), vocab)[1] is None


@pytest.mark.parametrize(
    ("severity", "colour"),
    [
        ("Minor", Colour.BLUE),
        ("Moderate", Colour.YELLOW),
        ("Severe", Colour.ORANGE),
        ("Extreme", Colour.RED),
        ("Unknown", None),
    ],
)
def test_severity_fallback(vocab: Vocabulary, severity: str, colour: Colour | None) -> None:
    assert classify(mk("Rainstorm Warning", severity=severity), vocab) == ("rainstorm", colour)


@pytest.mark.parametrize(
    ("name", "value", "step"),
    [
        ("631_step", "6", Step.FORECAST),
        ("631_step", "3", Step.WARNING),
        ("631_step", "1", Step.IMMINENT),
        ("warnd:step", "forecast", Step.FORECAST),
        ("warnd:step", "Warning", Step.WARNING),
        ("warnd:step", "IMMINENT", Step.IMMINENT),
        ("631_step", "预报", Step.FORECAST),
        ("631_step", "预警", Step.WARNING),
        ("631_step", "临灾预警", Step.IMMINENT),
        ("631_step", "２", None),  # not a 631 step
        ("631_step", "soon", None),
        ("step", "1", None),  # not our parameter name
    ],
)
def test_explicit_step(name: str, value: str, step: Step | None) -> None:
    assert explicit_step(mk("x", parameters=((name, value),))) is step


def test_explicit_step_absent() -> None:
    assert explicit_step(mk("x")) is None


def test_shipped_documents(vocab: Vocabulary) -> None:
    def first(name: str) -> CapInfo:
        return parse_cap((DATA / name).read_bytes()).infos[0]

    assert classify(first("cma_rainstorm_geocode.xml"), vocab) == ("rainstorm", Colour.YELLOW)
    en = parse_cap((DATA / "cma_rainstorm_geocode.xml").read_bytes()).infos[1]
    assert classify(en, vocab) == ("rainstorm", Colour.YELLOW)
    assert classify(first("cma_rainstorm_update.xml"), vocab) == ("rainstorm", Colour.ORANGE)
    assert classify(first("polygon_thunderstorm.xml"), vocab) == ("lightning", Colour.ORANGE)
    assert classify(first("circle_flash_flood.xml"), vocab) == ("flash_flood", Colour.RED)
    assert explicit_step(first("circle_flash_flood.xml")) is Step.IMMINENT
    assert classify(first("exercise_drill.xml"), vocab) == ("flash_flood", Colour.ORANGE)
    assert explicit_step(first("exercise_drill.xml")) is Step.WARNING
    assert classify(first("homeland_security_advisory.xml"), vocab) == (OTHER, Colour.ORANGE)
    assert classify(first("earthquake_update_cap11.xml"), vocab) == (OTHER, Colour.BLUE)


# -- loading -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "vocabulary.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_custom_vocabulary(tmp_path: Path) -> None:
    v = load_vocabulary(
        write(
            tmp_path,
            """
[hazards.rainstorm]
zh = "暴雨"
event_codes = ["11B03"]
keywords = ["暴雨"]
[colour]
parameter_names = ["level"]
[colour.values]
"1" = "red"
""",
        )
    )
    info = mk("强对流", event_codes=(("CN", "11b03"),), parameters=(("LEVEL", "1"),))
    assert classify(info, v) == ("rainstorm", Colour.RED)
    # No [colour.text] / [colour.severity]: nothing to fall back on.
    assert classify(mk("暴雨红色预警", severity="Extreme"), v) == ("rainstorm", None)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "at least one hazard"),
        ("[hazards.Rain]\nkeywords = ['x']", "lower-case identifiers"),
        ("[hazards.other]\nkeywords = ['x']", "lower-case identifiers"),
        ("[hazards.a]\nkeywords = 'x'", "list of non-empty strings"),
        (
            "[hazards.a]\nkeywords = ['暴雨']\n[hazards.b]\nkeywords = ['暴雨']",
            "already belongs to a",
        ),
        ("[hazards.a]\nevent_codes = ['X']\n[hazards.b]\nevent_codes = ['x']", "already belongs"),
        ("[hazards.a]\nkeywords = ['x']\n[colour.values]\n'v' = 'green'", "not one of"),
        ("[hazards.a\n", "vocabulary.toml"),
    ],
)
def test_invalid_vocabulary(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(VocabularyError, match=needle):
        load_vocabulary(write(tmp_path, text))


def test_missing_vocabulary_file(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match=r"missing\.toml"):
        load_vocabulary(tmp_path / "missing.toml")
