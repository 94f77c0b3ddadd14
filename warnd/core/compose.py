"""The console's 发布预警, pure: a duty officer's form → a checked draft → the CAP 1.2 values
warnd ingests like any feed's (warnd.cap.writer writes the document), the joint texts the
form starts from, the area chosen by township and village, and the two-person rule.

Nothing here does I/O; warnd.views.compose computes the preview, warnd.console.compose
serves the page, warnd.engine.approvals holds what waits for a second person.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from warnd.cap.model import CapArea, CapInfo, CapMessage
from warnd.core.domain import AlertStatus, Colour, Level, MsgType, RegionView, Step

GEOCODE_NAME = "行政区划代码"
HAZARD_CODE_NAME = "warnd:hazard"  # eventCode valueName: our own hazard code (vocabulary event_codes)
STEP_PARAMETER = "631_step"
COLOUR_PARAMETER = "预警颜色"
TEXT_PLACEHOLDERS = frozenset({"sender", "hazard", "colour", "step", "area", "hours"})
SEVERITY = {Colour.BLUE: "Minor", Colour.YELLOW: "Moderate", Colour.ORANGE: "Severe", Colour.RED: "Extreme"}
URGENCY = {Step.FORECAST: "Future", Step.WARNING: "Expected", Step.IMMINENT: "Immediate"}
CATEGORY = {"geohazard": "Geo"}  # everything else the county warns of is weather or water: Met
MAX_HEADLINE = 100
E = TypeVar("E", Colour, Step)
MAX_TEXT = 1000
MIN_HOURS, MAX_HOURS = 1, 72


def needs_approval(colour: Colour | str, step: Step | str) -> bool:
    """The two-person rule for a warning composed by hand: red, or at the imminent step."""
    return colour == Colour.RED or step == Step.IMMINENT


# --- the joint texts (气象预警 + 防御指引) ------------------------------------------------------
@dataclass(frozen=True)
class HazardTexts:
    headline: str
    description: str
    guidance: Mapping[str, str]  # colour → 防御指引


@dataclass(frozen=True)
class ComposeTexts:
    """compose.toml: the texts per hazard, and the default for hazards without their own."""

    default: HazardTexts
    hazards: Mapping[str, HazardTexts] = field(default_factory=dict)

    def for_hazard(self, hazard: str) -> HazardTexts:
        own = self.hazards.get(hazard)
        if own is None:
            return self.default
        return HazardTexts(own.headline or self.default.headline, own.description or self.default.description,
                           {**self.default.guidance, **own.guidance})


def placeholders_of(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


class _Blank(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class FilledTexts:
    headline: str
    description: str
    instruction: str


def fill_texts(texts: ComposeTexts, *, hazard: str, hazard_zh: str, colour: Colour, step_label: str,
               sender: str, area: str, hours: float) -> FilledTexts:
    t = texts.for_hazard(hazard)
    values = _Blank(sender=sender, hazard=hazard_zh, colour=colour.zh, step=step_label, area=area,
                    hours=f"{hours:g}")
    return FilledTexts(t.headline.format_map(values), t.description.format_map(values),
                       t.guidance.get(colour.value, "").format_map(values))


# --- the area ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Township:
    code: str
    name: str
    villages: tuple[RegionView, ...]


def township_tree(regions: Mapping[str, RegionView]) -> list[Township]:
    """Townships in code order, each with its villages (the tree of the compose page)."""
    villages: dict[str, list[RegionView]] = {}
    for r in regions.values():
        if r.level == Level.VILLAGE and r.parent_code:
            villages.setdefault(r.parent_code, []).append(r)
    return [Township(r.code, r.name, tuple(sorted(villages.get(r.code, []), key=lambda v: v.code)))
            for r in sorted(regions.values(), key=lambda r: r.code) if r.level == Level.TOWNSHIP]


@dataclass(frozen=True)
class Area:
    codes: tuple[str, ...]  # geocodes: a whole township by its own code, else its chosen villages
    description: str  # 官庄镇（全镇）、筲箕湾镇辰龙关村、…


def choose_area(picked: Sequence[str], regions: Mapping[str, RegionView]) -> Area:
    """The picked township and village codes, compacted: a township picked, or all of its
    villages picked, is the township; a village inside a picked township is not repeated.
    Unknown codes and levels other than township/village are dropped (the form offers none)."""
    chosen = {c for c in picked if c in regions and regions[c].level in (Level.TOWNSHIP, Level.VILLAGE)}
    tree = {t.code: t for t in township_tree(regions)}
    towns = {c for c in chosen if regions[c].level == Level.TOWNSHIP}
    for t in tree.values():
        if t.villages and all(v.code in chosen for v in t.villages):
            towns.add(t.code)
    villages = {c for c in chosen if regions[c].level == Level.VILLAGE and regions[c].parent_code not in towns}
    codes = sorted(towns | villages)
    parts = []
    for c in codes:
        r = regions[c]
        if r.level == Level.TOWNSHIP:
            parts.append(f"{r.name}（全镇）")
        else:
            parent = regions.get(r.parent_code or "")
            parts.append(f"{parent.name if parent else ''}{r.name}")
    return Area(tuple(codes), "、".join(parts))


# --- the draft --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draft:
    """A checked form: everything the CAP document needs."""

    hazard: str
    colour: Colour
    step: Step
    area: Area
    headline: str
    description: str
    instruction: str
    hours: float
    drill: bool = False

    @property
    def needs_approval(self) -> bool:
        return needs_approval(self.colour, self.step)


class DraftErrors(ValueError):
    """Field → what is wrong, in Chinese (shown beside the field)."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def read_draft(form: Mapping[str, str], picked: Sequence[str], regions: Mapping[str, RegionView],
               hazards: Sequence[str]) -> Draft:
    """The compose form → a Draft, or DraftErrors naming every field that is wrong."""
    errors: dict[str, str] = {}
    hazard = form.get("hazard", "").strip()
    if hazard not in hazards:
        errors["hazard"] = "请选择灾种。"
    colour = _enum(Colour, form.get("colour", ""))
    if colour is None:
        errors["colour"] = "请选择预警颜色。"
    step = _enum(Step, form.get("step", ""))
    if step is None:
        errors["step"] = "请选择 631 阶段（预报/预警/临灾预警）。"
    area = choose_area(picked, regions)
    if not area.codes:
        errors["area"] = "请至少选择一个乡镇或村。"
    texts = {k: " ".join(form.get(k, "").split()) if k == "headline" else form.get(k, "").strip()
             for k in ("headline", "description", "instruction")}
    if not texts["headline"]:
        errors["headline"] = "请填写标题。"
    elif len(texts["headline"]) > MAX_HEADLINE:
        errors["headline"] = f"标题不超过 {MAX_HEADLINE} 字。"
    for k, label in (("description", "预警内容"), ("instruction", "防御指引")):
        if len(texts[k]) > MAX_TEXT:
            errors[k] = f"{label}不超过 {MAX_TEXT} 字。"
    if not texts["instruction"]:
        errors["instruction"] = "请填写防御指引。"
    try:
        hours = float(form.get("hours", "") or "nan")
    except ValueError:
        hours = float("nan")
    if not MIN_HOURS <= hours <= MAX_HOURS:  # NaN fails too
        errors["hours"] = f"有效时长为 {MIN_HOURS}–{MAX_HOURS} 小时。"
    if errors:
        raise DraftErrors(errors)
    assert colour is not None and step is not None
    return Draft(hazard, colour, step, area, texts["headline"], texts["description"], texts["instruction"],
                 hours, drill=form.get("drill", "") in ("1", "on", "true"))


def _enum(kind: type[E], value: str) -> E | None:
    try:
        return kind(value.strip())
    except ValueError:
        return None


def draft_message(draft: Draft, *, identifier: str, sender: str, sender_name: str, hazard_zh: str,
                  author: str, now: datetime) -> CapMessage:
    """The CAP 1.2 values of a composed warning. The colour, hazard and 631 step are stated
    explicitly (parameters and eventCode), so the ingest classifies it exactly as composed."""
    info = CapInfo(
        categories=(CATEGORY.get(draft.hazard, "Met"),),
        event=f"{hazard_zh}{draft.colour.zh}预警",
        urgency=URGENCY[draft.step], severity=SEVERITY[draft.colour], certainty="Likely",
        language="zh-CN", event_codes=((HAZARD_CODE_NAME, draft.hazard),),
        effective=now, expires=now + timedelta(hours=draft.hours), sender_name=sender_name,
        headline=draft.headline, description=draft.description or None, instruction=draft.instruction,
        parameters=((STEP_PARAMETER, draft.step.value), (COLOUR_PARAMETER, draft.colour.zh)),
        areas=(CapArea(draft.area.description, geocodes=tuple((GEOCODE_NAME, c) for c in draft.area.codes)),),
    )
    return CapMessage(identifier=identifier, sender=sender, sent=now,
                      status=AlertStatus.EXERCISE if draft.drill else AlertStatus.ACTUAL,
                      msg_type=MsgType.ALERT, scope="Public", note=f"值班台编写：{author}", infos=(info,))
