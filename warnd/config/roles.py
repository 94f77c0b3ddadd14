"""roles.toml → warnd.core.roles.Roles: one table per role code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, RootModel, model_validator

from warnd.config.errors import RolesError
from warnd.config.files import package_default
from warnd.config.validation import NamesOrNone, Strict, enum_check, problem, read_toml, validate
from warnd.core.domain import Level
from warnd.core.roles import Role, Roles

LevelT = Annotated[Level, BeforeValidator(enum_check(Level, "must be one of {choices}, not {value!r}"))]


class RoleSpec(Strict):
    label: str | None = None  # default: the code
    level: LevelT
    aliases: NamesOrNone = ()  # 职务 values a roster may use for it
    superiors: NamesOrNone = ()  # roles looked for upwards when the ladder reaches "superior"


class RolesSpec(RootModel[dict[str, RoleSpec]]):
    @model_validator(mode="after")
    def _references(self) -> RolesSpec:
        owner: dict[str, str] = {}
        for code, spec in self.root.items():
            for i, sup in enumerate(spec.superiors):
                if sup not in self.root:
                    raise problem(f"unknown role {sup!r}", code, "superiors", i)
            # A 职务 text meaning two roles would make the roster's reading depend on order.
            for i, text in enumerate((spec.label or code, *spec.aliases)):
                other = owner.setdefault(text, code)
                if other != code:
                    where: tuple[str | int, ...] = (code, "aliases", i - 1) if i else (code, "label")
                    raise problem(f"{text!r} already names role {other!r}", *where)
        return self

    def build(self) -> Roles:
        return Roles({code: Role(code=code, label=s.label or code, level=s.level, aliases=s.aliases,
                                 superiors=s.superiors) for code, s in self.root.items()})


def roles_from(raw: Any, source: str = "<roles>") -> Roles:
    return validate(RolesSpec, raw, source, RolesError).build()


def load_roles(path: Path | None = None) -> Roles:
    """roles.toml at `path` (None: the package's default)."""
    path = path or package_default("roles.toml")
    return roles_from(read_toml(path, RolesError), str(path))
