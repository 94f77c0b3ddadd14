"""Classify a CAP <info> into (hazard code, colour) and read an explicit 631 step.

The vocabulary (vocabulary.toml, read by warnd.config.vocabulary) holds every word list, so
a county can teach warnd its feed's wording without a code change. Classification never fails: an unknown
hazard is "other" and an unknown colour is None, and policy decides what those mean.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from warnd.cap.model import CapInfo
from warnd.core.domain import Colour, Step

OTHER = "other"
# valueName of the eventCode a source's mapping prepends (warnd.feeds.mapping): an operator's
# decision, never second-guessed by the text.
OVERRIDE_NAME = "warnd"
# eventCode valueNames that carry an operator's decision: a source's mapping ("warnd") and a
# warning composed in the duty room ("warnd:hazard", warnd.core.compose).
OVERRIDE_NAMES = frozenset({OVERRIDE_NAME, "warnd:hazard"})
DEFAULT_EXPIRES_HOURS = 24.0

# Our own parameter convention for a producer (a hydrology service, our duty room) that
# states the 631 step. This is protocol, not county policy, so it lives in code.
STEP_PARAMETER_NAMES = ("631_step", "warnd:step")
_STEP_VALUES = {
    "6": Step.FORECAST,
    "3": Step.WARNING,
    "1": Step.IMMINENT,
    "6h": Step.FORECAST,
    "3h": Step.WARNING,
    "1h": Step.IMMINENT,
    "forecast": Step.FORECAST,
    "warning": Step.WARNING,
    "imminent": Step.IMMINENT,
    "预报": Step.FORECAST,
    "预警": Step.WARNING,
    "临灾预警": Step.IMMINENT,
    "临灾": Step.IMMINENT,
    "警报": Step.IMMINENT,
}


def normalise(text: str) -> str:
    """NFKC (full-width → ASCII, Ⅳ → IV), case-folded, blanks collapsed and trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Hazard:
    code: str
    zh: str
    event_codes: tuple[str, ...]
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    hazards: tuple[Hazard, ...]
    by_event_code: Mapping[str, str]  # normalised eventCode value → hazard code
    keyword_pattern: re.Pattern[str]
    by_keyword: Mapping[str, str]  # normalised keyword → hazard code
    colour_parameter_names: frozenset[str]  # case-folded
    colour_values: Mapping[str, Colour]
    colour_strip_prefixes: tuple[str, ...]
    colour_strip_suffixes: tuple[str, ...]
    colour_text_pattern: re.Pattern[str]
    colour_text: Mapping[str, Colour]
    severity_colours: Mapping[str, Colour]
    # Default lifetime of a warning whose message states no expiry (GB/T <expires/>), per
    # hazard code, and for every other hazard.
    expires_hours: Mapping[str, float] = field(default_factory=dict)
    default_expires_hours: float = DEFAULT_EXPIRES_HOURS
    # warnd channel → the GB/T <method> names whose text it uses (upper-cased), in order.
    channel_methods: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def default_expiry(self, hazard: str) -> timedelta:
        return timedelta(hours=self.expires_hours.get(hazard, self.default_expires_hours))

    def channel_texts(self, methods: Iterable[tuple[str, str]]) -> dict[str, str]:
        """The text each warnd channel should carry, from a GB/T message's <method> blocks."""
        by_name: dict[str, str] = {}
        for name, text in methods:
            by_name.setdefault(name.strip().upper(), text)
        out = {}
        for channel, names in self.channel_methods.items():
            for n in names:
                if n in by_name:
                    out[channel] = by_name[n]
                    break
        return out

    def label(self, hazard: str) -> str:
        """Chinese name of a hazard code, for messages; the code itself if unknown."""
        for h in self.hazards:
            if h.code == hazard:
                return h.zh
        return hazard

    @property
    def codes(self) -> tuple[str, ...]:
        return (*(h.code for h in self.hazards), OTHER)


def build_vocabulary(
    hazards: Sequence[Hazard],
    *,
    colour_parameter_names: Iterable[str] = (),
    colour_values: Mapping[str, Colour] | None = None,
    colour_strip_prefixes: Iterable[str] = (),
    colour_strip_suffixes: Iterable[str] = (),
    colour_text: Mapping[str, Colour] | None = None,
    severity_colours: Mapping[str, Colour] | None = None,
    expires_hours: Mapping[str, float] | None = None,
    default_expires_hours: float = DEFAULT_EXPIRES_HOURS,
    channel_methods: Mapping[str, Sequence[str]] | None = None,
) -> Vocabulary:
    """The lookup tables, normalised. A value claimed by two hazards makes the outcome depend
    on their order: warnd.config.vocabulary refuses such a file before it gets here."""
    by_event_code: dict[str, str] = {}
    by_keyword: dict[str, str] = {}
    for h in hazards:
        for v in h.event_codes:
            by_event_code.setdefault(normalise(v), h.code)
        for v in h.keywords:
            by_keyword.setdefault(normalise(v), h.code)
    text = {normalise(k): c for k, c in (colour_text or {}).items()}
    return Vocabulary(
        hazards=tuple(hazards),
        by_event_code=by_event_code,
        keyword_pattern=_alternation(by_keyword),
        by_keyword=by_keyword,
        colour_parameter_names=frozenset(n.casefold() for n in colour_parameter_names),
        colour_values={normalise(k): c for k, c in (colour_values or {}).items()},
        colour_strip_prefixes=tuple(normalise(s) for s in colour_strip_prefixes),
        colour_strip_suffixes=tuple(normalise(s) for s in colour_strip_suffixes),
        colour_text_pattern=_alternation(text),
        colour_text=text,
        severity_colours=dict(severity_colours or {}),
        expires_hours=dict(expires_hours or {}),
        default_expires_hours=default_expires_hours,
        channel_methods={c: tuple(n.strip().upper() for n in names) for c, names in (channel_methods or {}).items()},
    )


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    """One regex over all words: leftmost match wins, longest first at the same position.
    Latin-alphanumeric edges must be word edges, so "red" does not match "reduced" and
    "i级" does not match inside "ii级"; CJK has no word breaks, so no edge there."""
    parts = []
    for w in sorted(words, key=len, reverse=True):
        part = re.escape(w)
        if w[0].isascii() and w[0].isalnum():
            part = r"(?<![a-z0-9])" + part
        if w[-1].isascii() and w[-1].isalnum():
            part += r"(?![a-z0-9])"
        parts.append(part)
    return re.compile("|".join(parts) if parts else r"(?!)")


# -- classification ---------------------------------------------------------------------


def classify(info: CapInfo, vocab: Vocabulary) -> tuple[str, Colour | None]:
    """(hazard code, colour) of one <info>. Hazard "other" and colour None when unknown."""
    return classify_hazard(info, vocab), classify_colour(info, vocab)


def classify_hazard(info: CapInfo, vocab: Vocabulary) -> str:
    """A source's override code first; then the message's event code unless its text names
    other hazards only (the text is trusted: see hazard_conflict); then the text's keyword."""
    code, text = _code_hazard(info, vocab)
    if code is not None and (code in _override(info, vocab) or hazard_conflict(info, vocab) is None):
        return code
    return text or code or OTHER


def hazard_conflict(info: CapInfo, vocab: Vocabulary) -> tuple[str, str] | None:
    """(hazard of the event code, hazard of the text) when they disagree: the message's code
    says one hazard and its event/headline mention only others ("11B06" 大风 with a headline
    about 暴雨). None when they agree, when either says nothing, or for a source's override."""
    code, text = _code_hazard(info, vocab)
    if code is None or text is None or code in _override(info, vocab):
        return None
    mentioned = _text_hazards(info, vocab)
    if not mentioned or code in mentioned:
        return None
    return code, text


def _override(info: CapInfo, vocab: Vocabulary) -> set[str]:
    return {h for n, v in info.event_codes if n in OVERRIDE_NAMES and (h := vocab.by_event_code.get(normalise(v)))}


def _code_hazard(info: CapInfo, vocab: Vocabulary) -> tuple[str | None, str | None]:
    """(hazard of the first known event code, hazard of the leftmost keyword in the text)."""
    code = None
    for name, value in info.event_codes:
        hazard = vocab.by_event_code.get(normalise(value))
        if hazard:
            if name in OVERRIDE_NAMES:
                code = hazard
                break
            code = code or hazard
    text = None
    for t in (info.event, info.headline):
        if t:
            m = vocab.keyword_pattern.search(normalise(t))
            if m:
                text = vocab.by_keyword[m.group(0)]
                break
    return code, text


def _text_hazards(info: CapInfo, vocab: Vocabulary) -> set[str]:
    found: set[str] = set()
    for t in (info.event, info.headline):
        if t:
            found.update(vocab.by_keyword[m.group(0)] for m in vocab.keyword_pattern.finditer(normalise(t)))
    return found


def classify_colour(info: CapInfo, vocab: Vocabulary) -> Colour | None:
    for name, value in info.parameters:
        if name.casefold() in vocab.colour_parameter_names:
            colour = _colour_value(value, vocab)
            if colour is not None:
                return colour
            # An unrecognised value falls through to the text rather than failing:
            # the warning must still go out.
    for text in (info.event, info.headline):
        if text:
            found = [
                vocab.colour_text[m.group(0)]
                for m in vocab.colour_text_pattern.finditer(normalise(text))
            ]
            if found:
                return max(found, key=lambda c: c.rank)
    return vocab.severity_colours.get(info.severity)


def _colour_value(value: str, vocab: Vocabulary) -> Colour | None:
    v = normalise(value)
    # Strip affixes repeatedly: "IV级预警" loses "预警" then "级".
    for _ in range(4):
        if v in vocab.colour_values:
            return vocab.colour_values[v]
        before = v
        for p in vocab.colour_strip_prefixes:
            if v.startswith(p):
                v = v[len(p) :].strip()
        for s in vocab.colour_strip_suffixes:
            if v.endswith(s):
                v = v[: -len(s)].strip()
        if v == before:
            break
    return vocab.colour_values.get(v)


def explicit_step(info: CapInfo) -> Step | None:
    """The 631 step stated by a "631_step" / "warnd:step" parameter, else None."""
    value = info.parameter(*STEP_PARAMETER_NAMES)
    if value is None:
        return None
    return _STEP_VALUES.get(normalise(value))
