"""Messages worth reading (issue 12, part 6): the sender once, the area in words, an action for
every hazard and step, and every text within its length limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from warnd.config import (
    PolicyError,
    load_policy,
    load_roles,
    load_templates,
    load_vocabulary,
    parse_policy,
)
from warnd.config.files import package_default
from warnd.core.domain import Level, PersonView, RegionView, Step
from warnd.core.templates import (
    MAX_AREA,
    MAX_SMS_SEGMENTS,
    MAX_TTS_CHARS,
    area_words,
    headline_without_sender,
    sms_segments,
)
from warnd.db.models import Alert, Call
from warnd.engine.messages import Composer

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
SIGN = "某某自治县防汛抗旱指挥部办公室"  # a long 短信签名: the provider prepends 【SIGN】


def county(townships: int = 6, villages: int = 8) -> dict[str, RegionView]:
    regions = {"431222": RegionView("431222", "沅陵县", Level.COUNTY, None)}
    for t in range(1, townships + 1):
        tc = f"431222{t:03d}"
        regions[tc] = RegionView(tc, ["官庄镇", "马底驿乡", "二酉苗族乡", "凉水井镇", "七甲坪镇", "筲箕湾镇"][t - 1], Level.TOWNSHIP,
                                 "431222")
        for v in range(1, villages + 1):
            vc = f"{tc}{v:03d}"
            regions[vc] = RegionView(vc, f"辰龙关{'一二三四五六七八'[v - 1]}村", Level.VILLAGE, tc)
            for g in (1, 2):
                gc = f"{vc}{g:03d}"
                regions[gc] = RegionView(gc, "一二"[g - 1] + "组", Level.GROUP, vc)
    return regions


def below(regions: dict[str, RegionView], *codes: str) -> set[str]:
    """The codes and everything under them, as targeting expands an area."""
    return {c for c in regions if any(c.startswith(x) for x in codes)}


@pytest.mark.parametrize(("codes", "words"), [
    (("431222",), "沅陵县全境"),
    (("431222001",), "官庄镇"),
    (("431222001", "431222002"), "官庄镇，马底驿乡"),
    (("431222001001", "431222001002"), "官庄镇辰龙关一村、辰龙关二村"),
    (("431222001001001",), "官庄镇辰龙关一村一组"),
    (("431222001001", "431222001002", "431222001003", "431222002"), "官庄镇辰龙关一村、辰龙关二村、辰龙关三村，马底驿乡"),
    (("431222001001", "431222001002", "431222001003", "431222001004", "431222002"), "官庄镇辰龙关一村等4个村，马底驿乡"),
    (("431222001001", "431222001002", "431222001003001", "431222001004001", "431222002"), "官庄镇辰龙关一村等4处，马底驿乡"),
    (("431222001", "431222002", "431222003", "431222004", "431222005001"), "官庄镇，马底驿乡，二酉苗族乡，凉水井镇，七甲坪镇辰龙关一村"),
    (("431222001", "431222002", "431222003", "431222004", "431222005001", "431222005002"),
     "官庄镇、马底驿乡、二酉苗族乡等5个乡镇"),
])
def test_area_in_words(codes: tuple[str, ...], words: str) -> None:
    regions = county()
    assert area_words(below(regions, *codes), regions) == words
    assert len(words) <= MAX_AREA


def test_every_township_but_one_village_is_still_named_short() -> None:
    regions = county()
    codes = below(regions, *[f"431222{t:03d}" for t in range(1, 6)]) | below(regions, "431222006001")
    words = area_words(codes, regions)
    assert words.endswith("等6个乡镇") and len(words) <= MAX_AREA


@pytest.mark.parametrize(("headline", "sender", "shown"), [
    ("沅陵县气象台发布暴雨红色预警信号", "沅陵县气象台", "暴雨红色预警信号"),
    ("沅陵县气象台：暴雨红色预警", "沅陵县气象台", "暴雨红色预警"),
    ("暴雨红色预警信号", "沅陵县气象台", "暴雨红色预警信号"),
    ("沅陵县气象台", "沅陵县气象台", "沅陵县气象台"),
    ("沅陵县发布暴雨黄色预警", "沅陵县防汛抗旱指挥部", "暴雨黄色预警"),
    ("湖南省气象台发布暴雨橙色预警", "沅陵县气象台", "暴雨橙色预警"),
])
def test_headline_names_the_sender_once(headline: str, sender: str, shown: str) -> None:
    assert headline_without_sender(headline, sender) == shown


def _alert(hazard: str, step: Step, codes: set[str], *, instruction: str = "") -> Alert:
    return Alert(id=7, sender="hunan-qxt@cma.gov.cn", identifier="x", sent=NOW, status="Exercise",
                 msg_type="Alert", hazard=hazard, colour="red", step=step.value,
                 sender_name="湖南省怀化市沅陵县气象台",
                 headline="湖南省怀化市沅陵县气象台发布暴雨红色预警信号：过去3小时全县大部地区降雨量已达100毫米以上且降雨将持续",
                 instruction=instruction, area_desc="沅陵县", region_codes=sorted(codes), received_at=NOW)


HAZARDS = sorted(set(load_vocabulary().codes) | {"other"})
PERSON = PersonView(id=1, name="张书记", phone="+8613900000001", role="village_secretary", region_code="431222001001")


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("hazard", HAZARDS)
def test_every_hazard_and_step_has_an_action_within_the_limits(hazard: str, step: Step) -> None:
    templates, policy, regions = load_templates(None), load_policy(None), county()
    guidance = policy.guidance_for(hazard, step)
    assert guidance, f"no 防御指引 for {hazard} × {step}"
    codes = below(regions, *[f"431222{t:03d}" for t in range(1, 6)]) | below(regions, "431222006001")
    alert = _alert(hazard, step, codes)
    composer = Composer(templates, load_roles(None), None, policy=policy, regions=regions)
    call = Call(id=3, alert_id=7, person_id=1, step=step.value, role="village_secretary", region_code="431222001001",
                ladder="red", short_code="8K3Q")
    texts = {
        (name, channel): composer.body(alert, name, channel, PERSON, NOW, call=call, official=PERSON,
                                       region_name="辰龙关一村")
        for name in ("warning", "update_info", "resend", "deputy", "superior", "cancel_notice")
        for channel in ("sms", "voice")
    }
    texts[("speaker_text", "speaker")] = composer.body(alert, "speaker_text", "speaker", PERSON, NOW)
    for (name, channel), text in texts.items():
        assert "{" not in text and text.count("沅陵县气象台") <= 1, (name, channel, text)
        if channel == "sms":
            assert sms_segments(text, SIGN) <= MAX_SMS_SEGMENTS, (name, len(text), text)
        else:
            assert len(text) <= MAX_TTS_CHARS, (name, channel, len(text), text)
    for key in (("warning", "sms"), ("warning", "voice"), ("update_info", "sms"), ("speaker_text", "speaker")):
        text = texts[key]
        assert guidance in text, (key, text)  # an action, though the CAP carried none
        assert "等6个乡镇" in text, (key, text)  # the area in words
        assert text.count("湖南省怀化市沅陵县气象台") == 1 and "发布暴雨红色预警信号" in text


def test_the_warnings_own_instruction_wins_and_is_shortened_at_a_sentence() -> None:
    templates, policy, regions = load_templates(None), load_policy(None), county()
    own = "请立即转移辰龙关一村河边住户。" + "沿河道路已封闭，请勿通行，" * 10
    alert = _alert("rainstorm", Step.IMMINENT, below(regions, "431222001001"), instruction=own)
    text = Composer(templates, load_roles(None), None, policy=policy, regions=regions).body(
        alert, "warning", "sms", PERSON, NOW)
    assert "请立即转移辰龙关一村河边住户。" in text and policy.guidance_for("rainstorm", "imminent") not in text
    assert "官庄镇辰龙关一村" in text
    assert sms_segments(text, SIGN) <= MAX_SMS_SEGMENTS


def test_a_long_guidance_is_refused_at_start() -> None:
    text = (package_default("policy.toml").read_text(encoding="utf-8")
            + '\n[guidance.hail_extra]\nimminent = "' + "很长" * 50 + '"\n')
    with pytest.raises(PolicyError, match=r"guidance\.hail_extra\.imminent.*at most 90 characters"):
        parse_policy(text, load_roles(None))
