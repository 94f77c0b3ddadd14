"""What every configuration model shares: a strict base model, field types that explain
themselves in the words an operator reads, the TOML read, and pydantic's errors turned into
one line per problem with the key path (`rules[0].targets[1].roles[0]: unknown role …`).

Validation is strict on purpose: an unknown key, a string where a number belongs or a
misspelt code is refused, never coerced or ignored. A typo must not silently drop an
official from a call list.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from warnd.config.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)
Err = TypeVar("Err", bound=ConfigError)


def problem(reason: str, *at: str | int) -> PydanticCustomError:
    """An error in our own words. `at` continues the key path below the value being
    validated (a model-level check that blames one of its keys)."""
    return PydanticCustomError("warnd", "{reason}", {"reason": reason, "at": at})


class Strict(BaseModel):
    """A TOML table: unknown keys are refused, naming the keys that are allowed; values are
    never coerced (no "20" for 20, no 1 for true)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise problem("must be a table")
        allowed = {f.alias or name for name, f in cls.model_fields.items()}
        for key in data:
            if key not in allowed:
                raise problem(f"unknown key (allowed: {', '.join(sorted(allowed))})", key)
        return data


def context(info: ValidationInfo) -> dict[str, Any]:
    """The validation context: what a file's parts may refer to (declared names, roles,
    the environment), filled by the caller or by a model before its parts are validated."""
    return info.context if isinstance(info.context, dict) else {}


# -- field types ---------------------------------------------------------------------------


def as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _string_list(allow_empty: bool, unique: bool) -> Callable[[Any], tuple[str, ...]]:
    def check(v: Any) -> tuple[str, ...]:
        if isinstance(v, tuple):
            v = list(v)
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise problem("must be a list of non-empty strings")
        if not v and not allow_empty:
            raise problem("must not be empty")
        out = tuple(x.strip() for x in v)
        if unique and len(set(out)) != len(out):
            raise problem("lists the same value twice")
        return out

    return check


# Checks of a TOML list (array), held as a tuple of trimmed non-empty strings: `strs` may be
# empty, `names` may not and lists each value once.
strs = _string_list(allow_empty=True, unique=False)
names = _string_list(allow_empty=False, unique=True)
names_or_none = _string_list(allow_empty=True, unique=True)

List = Annotated[tuple[str, ...], BeforeValidator(as_tuple)]  # plain list, elements typed
Strs = Annotated[tuple[str, ...], BeforeValidator(strs)]
Names = Annotated[tuple[str, ...], BeforeValidator(names)]
NamesOrNone = Annotated[tuple[str, ...], BeforeValidator(names_or_none)]


def number(v: Any) -> float:
    # bool is an int in Python; `true` as a duration is certainly a mistake.
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise problem("must be a number")
    return float(v)


def positive(v: Any) -> float:
    if not number(v) > 0:
        raise problem("must be positive")
    return float(v)


Number = Annotated[float, BeforeValidator(number)]
Positive = Annotated[float, BeforeValidator(positive)]


def enum_check(kind: type[E], message: str = "unknown {noun} {value!r} (use {choices})",
               noun: str = "") -> Callable[[Any], E]:
    """A check that `v` is a value of `kind`, whose error lists the values allowed."""
    noun = noun or kind.__name__.lower()
    choices = ", ".join(str(m.value) for m in kind)

    def check(v: Any) -> E:
        if isinstance(v, kind):
            return v
        try:
            return kind(v)
        except (ValueError, TypeError):
            raise problem(message.format(noun=noun, value=v, choices=choices)) from None

    return check


# -- errors --------------------------------------------------------------------------------


def keypath(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _reason(err: Mapping[str, Any]) -> str:
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    reasons = {
        "missing": "missing required key",
        "extra_forbidden": "unknown key",
        "string_type": f"must be a string, not {got!r}",
        "int_type": f"must be a whole number, not {got!r}",
        "int_from_float": f"must be a whole number, not {got!r}",
        "float_type": f"must be a number, not {got!r}",
        "bool_type": f"must be true or false, not {got!r}",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "literal_error": f"must be one of {ctx.get('expected', '')}, not {got!r}",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
    }
    if kind in reasons:
        return reasons[kind]
    msg = str(err.get("msg", kind))
    return msg[:1].lower() + msg[1:]


def explain(e: ValidationError) -> list[str]:
    """One `key.path: what is wrong` line per problem, in file order."""
    out: list[str] = []
    for err in e.errors(include_url=False):
        loc = list(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "warnd":
            loc += list(ctx.get("at", ()))
            reason = str(ctx["reason"])
        else:
            reason = _reason(err)
        line = f"{keypath(loc)}: {reason}" if loc else reason
        if line not in out:
            out.append(line)
    return out


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], raw: Any, source: str, error: type[Err],
             context: dict[str, Any] | None = None) -> M:
    """`model` validated from `raw` (a parsed TOML document), or `error` naming `source`."""
    try:
        return model.model_validate(raw, context=context if context is not None else {})
    except ValidationError as e:
        raise error.of(source, explain(e)) from None


def read_toml(path: Path, error: type[Err]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_toml(text, str(path), error)


def parse_toml(text: str, source: str, error: type[Err]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{source}: not valid TOML: {e}") from None
