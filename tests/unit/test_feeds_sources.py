"""Feed sources configuration, trust checks and message normalisation (pure)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from support.feeds_support import V1, cap
from support.samples import sample
from warnd.cap.classify import classify, explicit_step
from warnd.cap.parser import parse_cap
from warnd.config import SourcesError, load_sources, load_vocabulary, load_wording, parse_sources
from warnd.core.domain import Colour, MsgType, Step
from warnd.feeds.mapping import LiftWithoutReferences, prepare

VOCAB = load_vocabulary()
WORDING = load_wording()


def test_shipped_sources_example_loads() -> None:
    env = {"WARND_FEED_CMA_TOKEN": "t" * 32, "WARND_FEED_HYDRO_SECRET": "s" * 32,
           "WARND_TELEMETRY_TOKEN": "x" * 32, "WARND_FEED_12379_TOKEN": "n" * 32}
    sources = load_sources(sample("sources.toml"), env=env, known_hazards=VOCAB.codes)
    national = sources.by_name["hunan-12379"]
    assert national.sender_allowed("43122241600000") and national.mapping.level_scheme == "none"
    kinds = {s.kind for s in sources.by_name.values()}
    assert kinds == {"cap_push", "cap_poll", "telemetry"}
    push = sources.of_kind("cap_push")[0]
    assert push.token == "t" * 32 and push.senders


@pytest.mark.parametrize(("toml", "needle"), [
    ({"sources": {"a": {"kind": "cap_mail"}}}, "sources.a.kind: must be one of"),
    ({"sources": {"a": {"kind": "cap_push", "token": "t" * 20}}}, "sources.a.senders: a CAP source needs a non-empty senders allow-list"),
    ({"sources": {"a": {"kind": "cap_push", "senders": ["x"]}}}, "sources.a: a push source needs a token or a secret"),
    ({"sources": {"a": {"kind": "cap_push", "senders": ["x"], "token": "short"}}}, "sources.a.token: secrets must be at least 16 characters"),
    ({"sources": {"a": {"kind": "cap_push", "senders": ["x"], "token": "env:NOPE"}}}, "sources.a.token: environment variable NOPE is not set"),
    ({"sources": {"a": {"kind": "cap_poll", "senders": ["x"], "url": "ftp://x"}}}, "sources.a.url: a poll source needs an http(s) url"),
    ({"sources": {"a": {"kind": "cap_poll", "senders": ["x"], "url": "http://x", "interval_seconds": 0}}},
     "sources.a.interval_seconds: must be a positive number"),
    ({"sources": {"A b": {"kind": "telemetry"}}}, "sources.A b: source names are lower-case"),
    ({"sources": {"a": {"kind": "telemetry", "colour": "red"}}}, "sources.a.colour: unknown key"),
    ({"sources": {"a": {"kind": "cap_poll", "senders": ["x"], "url": "http://x",
                        "mapping": {"hazard": "tsunami"}}}}, "sources.a.mapping.hazard: 'tsunami' is not a hazard"),
    ({"sources": {"a": {"kind": "cap_poll", "senders": ["x"], "url": "http://x",
                        "mapping": {"step": "soon"}}}}, "sources.a.mapping.step: must be forecast/warning/imminent"),
])
def test_invalid_sources_name_the_mistake(toml: dict, needle: str) -> None:
    with pytest.raises(SourcesError, match=None) as e:
        parse_sources(toml, env={}, known_hazards=VOCAB.codes)
    assert needle in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match=r"sources\.toml"):
        load_sources(tmp_path / "sources.toml")


def test_push_auth_token_and_hmac() -> None:
    src = parse_sources({"sources": {"cma": {"kind": "cap_push", "senders": ["a"], "token": "tok-" + "x" * 20,
                                             "secret": "sec-" + "y" * 20}}}, env={}).by_name["cma"]
    body = b"<alert/>"
    assert src.check_auth("Bearer tok-" + "x" * 20, None, body)
    assert not src.check_auth("Bearer tok-" + "x" * 19, None, body)
    assert not src.check_auth(None, None, body)
    sig = "sha256=" + hmac.new(("sec-" + "y" * 20).encode(), body, hashlib.sha256).hexdigest()
    assert src.check_auth(None, sig, body)
    assert not src.check_auth(None, sig, body + b" ")
    assert src.sender_allowed("a") and not src.sender_allowed("b")


def _source(mapping: dict) -> object:
    return parse_sources({"sources": {"s": {"kind": "cap_poll", "senders": ["a"], "url": "http://x",
                                            "mapping": mapping}}}, env={}, known_hazards=VOCAB.codes).by_name["s"]


def test_mapping_overrides_hazard_colour_step_via_own_codes() -> None:
    # A source's private code (the national 11B03 is in the shipped vocabulary itself).
    src = _source({"event_codes": {"RS-01": "rainstorm"}, "colour": "orange", "step": "3"})
    msg = parse_cap(cap("X1", event="气象预警", headline="请注意", event_codes=(("provincial", "RS-01"),),
                        severity="Unknown"))
    hazard, colour = classify(msg.infos[0], VOCAB)
    assert hazard == "other" and colour is None
    out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
    assert classify(out.infos[0], VOCAB) == ("rainstorm", Colour.ORANGE)
    assert explicit_step(out.infos[0]) == Step.WARNING
    # The message's own colour wins over the default; an explicit step wins over the default.
    msg = parse_cap(cap("X2", params=(("631_step", "imminent"),)))
    out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
    assert classify(out.infos[0], VOCAB)[1] == Colour.YELLOW and explicit_step(out.infos[0]) == Step.IMMINENT


def test_transfer_wording_sets_the_step_and_forced_hazard() -> None:
    src = _source({"hazard": "flash_flood"})
    msg = parse_cap(cap("X3", event="山洪灾害立即转移预警", headline="辰龙关村立即转移"))
    out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
    assert explicit_step(out.infos[0]) == Step.IMMINENT and classify(out.infos[0], VOCAB)[0] == "flash_flood"
    msg = parse_cap(cap("X4", event="山洪灾害准备转移预警"))
    assert explicit_step(prepare(msg, None, VOCAB, WORDING).infos[0]) == Step.WARNING
    untouched = parse_cap(cap("X5"))
    assert prepare(untouched, None, VOCAB, WORDING) is untouched


def test_lifting_update_becomes_cancel_and_needs_references() -> None:
    t = parse_cap(cap("L1", msg_type="Update", event="暴雨黄色预警解除", headline="沅陵县气象台解除暴雨黄色预警信号",
                      references=[("RS-1", parse_cap(cap("RS-1")).sent)]))
    assert prepare(t, None, VOCAB, WORDING).msg_type == MsgType.CANCEL
    with pytest.raises(LiftWithoutReferences):
        prepare(parse_cap(cap("L2", event="暴雨黄色预警解除")), None, VOCAB, WORDING)
    # 解除 of one signal while issuing another is the new warning, not a lifting.
    down = parse_cap(cap("L4", msg_type="Update", event="暴雨蓝色预警", references=[("RS-1", t.sent)],
                         headline="沅陵县气象台解除暴雨黄色预警信号，发布暴雨蓝色预警信号"))
    assert prepare(down, None, VOCAB, WORDING).msg_type == MsgType.UPDATE
    # "解除" only in an instruction about after-the-event does not lift anything.
    kept = parse_cap(cap("L3", headline="解除转移后请勿立即返回", geocodes=(V1,)))
    assert prepare(kept, None, VOCAB, WORDING).msg_type == MsgType.ALERT


@pytest.mark.parametrize(("event", "hazard", "colour"), [
    ("暴雨橙色预警", "rainstorm", Colour.ORANGE), ("雷电黄色预警", "lightning", Colour.YELLOW),
    ("大风蓝色预警", "gale", Colour.BLUE), ("冰雹红色预警", "hail", Colour.RED),
    ("高温橙色预警", "heat", Colour.ORANGE), ("寒潮蓝色预警", "cold_wave", Colour.BLUE),
    ("大雾黄色预警", "fog", Colour.YELLOW), ("道路结冰橙色预警", "road_icing", Colour.ORANGE),
    ("暴雪红色预警", "snowstorm", Colour.RED), ("干旱橙色预警", "drought", Colour.ORANGE),
    ("霜冻黄色预警", "frost", Colour.YELLOW), ("霾橙色预警", "haze", Colour.ORANGE),
    ("沙尘暴红色预警", "sandstorm", Colour.RED), ("台风蓝色预警", "typhoon", Colour.BLUE),
    ("洪水黄色预警", "flood", Colour.YELLOW), ("山洪灾害红色预警", "flash_flood", Colour.RED),
    ("地质灾害气象风险橙色预警", "geohazard", Colour.ORANGE),
])
def test_vocabulary_table_of_docs_feeds(event: str, hazard: str, colour: Colour) -> None:
    msg = parse_cap(cap("V", event=event, headline=event, event_codes=(), severity="Unknown"))
    assert classify(msg.infos[0], VOCAB) == (hazard, colour)


@pytest.mark.parametrize(("name", "value", "colour"), [
    ("风险等级", "III级", Colour.YELLOW), ("风险等级", "风险较高", Colour.YELLOW), ("风险等级", "高", Colour.ORANGE),
    ("风险预警等级", "风险很高", Colour.RED),
    ("预警级别", "Ⅱ级", Colour.ORANGE), ("预警等级", "橙色预警", Colour.ORANGE),
])
def test_hydrology_and_geohazard_risk_levels(name: str, value: str, colour: Colour) -> None:
    msg = parse_cap(cap("R", event="地质灾害气象风险预警", headline="风险预警", event_codes=(),
                        params=((name, value),), severity="Unknown"))
    assert classify(msg.infos[0], VOCAB) == ("geohazard", colour)


# -- declared code and level schemes (issue 13, part 2) -------------------------------------


def test_type_level_scheme_reads_four_digit_codes_level_01_as_blue() -> None:
    src = _source({"code_scheme": "type_level", "event_codes": {"03": "rainstorm", "06": "gale"}})
    for code, colour in (("0301", Colour.BLUE), ("0302", Colour.YELLOW), ("0303", Colour.ORANGE),
                         ("0304", Colour.RED)):
        msg = parse_cap(cap("T" + code, event="气象预警", headline="请注意", event_codes=(("level", code),),
                            severity="Unknown"))
        out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
        assert classify(out.infos[0], VOCAB) == ("rainstorm", colour)


def test_without_a_declared_scheme_a_four_digit_code_is_no_colour() -> None:
    src = _source({"event_codes": {"03": "rainstorm"}})
    msg = parse_cap(cap("T1", event="气象预警", headline="请注意", event_codes=(("level", "0304"),),
                        severity="Unknown"))
    out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
    assert classify(out.infos[0], VOCAB) == ("other", None)


@pytest.mark.parametrize("scheme,level,colour", [
    ("blue_first", "1", Colour.BLUE), ("blue_first", "4", Colour.RED),
    ("red_first", "1", Colour.RED), ("red_first", "4", Colour.BLUE), ("none", "1", None),
])
def test_level_scheme_of_a_bare_number(scheme: str, level: str, colour: Colour | None) -> None:
    src = _source({"level_scheme": scheme})
    msg = parse_cap(cap("L1", event="暴雨预警", headline="请注意", params=(("预警级别", level),), severity="Unknown"))
    out = prepare(msg, src, VOCAB, WORDING)  # type: ignore[arg-type]
    assert classify(out.infos[0], VOCAB)[1] == colour


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(SourcesError, match="code_scheme"):
        _source({"code_scheme": "provincial"})
    with pytest.raises(SourcesError, match="level_scheme"):
        _source({"level_scheme": "1=red"})
