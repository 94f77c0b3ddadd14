"""Pure normalisation of an incoming CAP message before it is ingested.

- 解除 (lifting): Chinese feeds often lift a warning with an Alert/Update whose event reads
  "暴雨黄色预警解除" instead of a CAP Cancel. With references it becomes a Cancel of them;
  without references it cannot be matched to anything and is refused (never sent out as
  a new warning).
- 631 step from wording: "立即转移" → imminent, "准备转移" → warning (vocabulary [steps.text]),
  when no explicit `631_step` parameter is present.
- A source's mapping overrides (sources.toml): its own eventCode values → hazard, a forced
  hazard, a default colour and a default step.

Overrides are expressed by adding our own eventCode / parameter values in front of the
message's, so the ordinary classifier (warnd.cap.classify) does the rest and the stored
raw XML stays what the producer sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from warnd.cap.classify import OVERRIDE_NAME, Vocabulary, classify_colour, explicit_step, normalise
from warnd.cap.model import CapInfo, CapMessage
from warnd.core.domain import Colour, MsgType, Step
from warnd.feeds.sources import Source, SourceMapping

__all__ = ["DEFAULT_WORDING", "OVERRIDE_NAME", "LiftWithoutReferences", "Wording", "prepare"]


class LiftWithoutReferences(ValueError):
    pass


@dataclass(frozen=True)
class Wording:
    step_text: Mapping[str, Step]  # normalised phrase → step
    lifting: tuple[str, ...]  # normalised words meaning "lifted"
    # A text that also says one of these issues something new ("解除黄色，发布蓝色预警"):
    # not a pure lifting, so it is never turned into a Cancel.
    lifting_unless: tuple[str, ...] = ("发布", "升级", "降级", "调整", "更新", "继续", "改发", "变更")

    def step_of(self, text: str) -> Step | None:
        t = normalise(text)
        found = [s for w, s in self.step_text.items() if w in t]
        return max(found, key=lambda s: s.rank) if found else None

    def is_lifting(self, text: str) -> bool:
        t = normalise(text)
        return any(w in t for w in self.lifting)

    def issues_new(self, text: str) -> bool:
        t = normalise(text)
        return any(w in t for w in self.lifting_unless)


DEFAULT_WORDING = Wording(
    step_text={"立即转移": Step.IMMINENT, "紧急转移": Step.IMMINENT, "准备转移": Step.WARNING},
    lifting=("解除",),
)


_LIFT_EXEMPT = re.compile(r"解除.{0,4}(转移|警戒)后")  # "解除转移后..." in an instruction is not a lift


def _texts(info: CapInfo) -> list[str]:
    return [t for t in (info.event, info.headline) if t]


def prepare(msg: CapMessage, source: Source | None, vocab: Vocabulary,
            wording: Wording = DEFAULT_WORDING) -> CapMessage:
    """The message as warnd should ingest it. Raises LiftWithoutReferences."""
    if msg.msg_type in (MsgType.ALERT, MsgType.UPDATE) and msg.infos and all(
        any(wording.is_lifting(t) and not wording.issues_new(t) and not _LIFT_EXEMPT.search(t)
            for t in _texts(i)) for i in msg.infos
    ):
        if not msg.references:
            raise LiftWithoutReferences("a 解除 (lifting) message must reference the warning it lifts")
        return replace(msg, msg_type=MsgType.CANCEL)
    infos = tuple(_prepare_info(i, source, vocab, wording) for i in msg.infos)
    return replace(msg, infos=infos) if infos != msg.infos else msg


_TYPE_LEVEL_RE = re.compile(r"(\d{2})(0[1-4])")
_BLUE_FIRST = {1: Colour.BLUE, 2: Colour.YELLOW, 3: Colour.ORANGE, 4: Colour.RED}
_RED_FIRST = {1: Colour.RED, 2: Colour.ORANGE, 3: Colour.YELLOW, 4: Colour.BLUE}
LEVEL_SCHEMES = {"blue_first": _BLUE_FIRST, "red_first": _RED_FIRST}
# Parameters a bare level number may arrive in (GB/T <severity> with a number is kept as "severity").
LEVEL_PARAMETERS = frozenset({"severity", "level", "预警级别", "预警等级", "warninglevel", "alertlevel"})


def _scheme_codes(info: CapInfo, mapping: SourceMapping) -> tuple[str | None, Colour | None]:
    """(hazard, colour) read through the source's declared schemes. A bare level number is
    read as a colour only when the source declares how it numbers levels."""
    hazard: str | None = None
    colour: Colour | None = None
    if mapping.code_scheme == "type_level":
        for _n, value in info.event_codes:
            m = _TYPE_LEVEL_RE.fullmatch(value.strip())
            if m:
                hazard = mapping.event_codes.get(m.group(1)) or mapping.event_codes.get(value.strip())
                colour = _BLUE_FIRST[int(m.group(2))]
                break
    table = LEVEL_SCHEMES.get(mapping.level_scheme)
    if colour is None and table is not None:
        for name, value in info.parameters:
            v = value.strip()
            if name.casefold() in LEVEL_PARAMETERS and v.isdigit() and int(v) in table:
                colour = table[int(v)]
                break
    return hazard, colour


def _prepare_info(info: CapInfo, source: Source | None, vocab: Vocabulary, wording: Wording) -> CapInfo:
    mapping = source.mapping if source is not None else None
    event_codes = list(info.event_codes)
    parameters = list(info.parameters)
    if mapping is not None:
        scheme_hazard, scheme_colour = _scheme_codes(info, mapping)
        if scheme_colour is not None:
            parameters.insert(0, ("colour", scheme_colour.value))
        hazard = mapping.hazard or scheme_hazard
        if hazard is None:
            for _n, value in info.event_codes:
                hazard = mapping.event_codes.get(value) or mapping.event_codes.get(normalise(value))
                if hazard:
                    break
        if hazard:
            event_codes.insert(0, (OVERRIDE_NAME, hazard))
        if mapping.colour is not None and classify_colour(info, vocab) is None:
            parameters.append(("colour", mapping.colour.value))
    if explicit_step(info) is None:
        step = None
        for t in _texts(info):
            step = wording.step_of(t)
            if step:
                break
        if step is None and mapping is not None:
            step = mapping.step
        if step is not None:
            parameters.append(("631_step", step.value))
    if event_codes == list(info.event_codes) and parameters == list(info.parameters):
        return info
    return replace(info, event_codes=tuple(event_codes), parameters=tuple(parameters))
