"""Classify a CAP <info> into (hazard code, colour) and read an explicit 631 step.

The vocabulary (config/vocabulary.toml) holds every word list, so a county can teach
warnd its feed's wording without a code change. Classification never fails: an unknown
hazard is "other" and an unknown colour is None, and policy decides what those mean.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warnd.cap.model import CapInfo
from warnd.core.domain import Colour, Step
from warnd.paths import default_config

OTHER = "other"

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

_IDENT_RE = re.compile(r"[a-z][a-z0-9_]*")


class VocabularyError(ValueError):
    pass


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

    def label(self, hazard: str) -> str:
        """Chinese name of a hazard code, for messages; the code itself if unknown."""
        for h in self.hazards:
            if h.code == hazard:
                return h.zh
        return hazard

    @property
    def codes(self) -> tuple[str, ...]:
        return (*(h.code for h in self.hazards), OTHER)


def load_vocabulary(path: Path | None = None) -> Vocabulary:
    path = path or default_config("vocabulary.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise VocabularyError(f"{path}: {e}") from e
    try:
        return _build(raw)
    except VocabularyError as e:
        raise VocabularyError(f"{path}: {e}") from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise VocabularyError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _colour(value: Any, where: str) -> Colour:
    try:
        return Colour(value)
    except ValueError:
        raise VocabularyError(f"{where}: {value!r} is not one of blue/yellow/orange/red") from None


def _build(raw: dict[str, Any]) -> Vocabulary:
    hazards_raw = raw.get("hazards")
    if not isinstance(hazards_raw, dict) or not hazards_raw:
        raise VocabularyError("[hazards] must define at least one hazard")
    hazards: list[Hazard] = []
    by_event_code: dict[str, str] = {}
    by_keyword: dict[str, str] = {}
    for code, spec in hazards_raw.items():
        where = f"[hazards.{code}]"
        if not _IDENT_RE.fullmatch(code) or code == OTHER:
            raise VocabularyError(f"{where}: hazard codes are lower-case identifiers, not 'other'")
        if not isinstance(spec, dict):
            raise VocabularyError(f"{where} must be a table")
        hazard = Hazard(
            code=code,
            zh=str(spec.get("zh", code)),
            event_codes=_strings(spec.get("event_codes", []), f"{where} event_codes"),
            keywords=_strings(spec.get("keywords", []), f"{where} keywords"),
        )
        # A value claimed by two hazards would make the outcome depend on file order.
        for table, listed, kind in (
            (by_event_code, hazard.event_codes, "event code"),
            (by_keyword, hazard.keywords, "keyword"),
        ):
            for v in listed:
                key = normalise(v)
                if table.get(key, code) != code:
                    raise VocabularyError(f"{where}: {kind} {v!r} already belongs to {table[key]}")
                table[key] = code
        hazards.append(hazard)

    colour = raw.get("colour", {})
    if not isinstance(colour, dict):
        raise VocabularyError("[colour] must be a table")
    values = {
        normalise(k): _colour(v, f"[colour.values] {k}")
        for k, v in colour.get("values", {}).items()
    }
    text = {
        normalise(k): _colour(v, f"[colour.text] {k}") for k, v in colour.get("text", {}).items()
    }
    severity = {
        k: _colour(v, f"[colour.severity] {k}") for k, v in colour.get("severity", {}).items()
    }
    return Vocabulary(
        hazards=tuple(hazards),
        by_event_code=by_event_code,
        keyword_pattern=_alternation(by_keyword),
        by_keyword=by_keyword,
        colour_parameter_names=frozenset(
            n.casefold() for n in _strings(colour.get("parameter_names", []), "parameter_names")
        ),
        colour_values=values,
        colour_strip_prefixes=tuple(
            normalise(s) for s in _strings(colour.get("strip_prefixes", []), "strip_prefixes")
        ),
        colour_strip_suffixes=tuple(
            normalise(s) for s in _strings(colour.get("strip_suffixes", []), "strip_suffixes")
        ),
        colour_text_pattern=_alternation(text),
        colour_text=text,
        severity_colours=severity,
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
    for _name, value in info.event_codes:
        hazard = vocab.by_event_code.get(normalise(value))
        if hazard:
            return hazard
    for text in (info.event, info.headline):
        if text:
            m = vocab.keyword_pattern.search(normalise(text))
            if m:
                return vocab.by_keyword[m.group(0)]
    return OTHER


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
