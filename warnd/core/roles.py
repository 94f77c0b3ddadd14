"""Role vocabulary (config/roles.toml): codes, Chinese labels, roster aliases, superiors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from warnd.core.domain import Level
from warnd.paths import default_config


class RolesError(ValueError):
    pass


@dataclass(frozen=True)
class Role:
    code: str
    label: str
    level: Level
    aliases: tuple[str, ...]
    superiors: tuple[str, ...]


@dataclass(frozen=True)
class Roles:
    by_code: dict[str, Role]

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def __getitem__(self, code: str) -> Role:
        return self.by_code[code]

    def label(self, code: str) -> str:
        role = self.by_code.get(code)
        return role.label if role else code

    def resolve(self, text: str) -> str | None:
        """Map a roster 职务 value (a code, a label or an alias) to a role code."""
        t = text.strip()
        if t in self.by_code:
            return t
        for role in self.by_code.values():
            if t == role.label or t in role.aliases:
                return role.code
        return None


def load_roles(path: Path | None = None) -> Roles:
    path = path or default_config("roles.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RolesError(f"{path}: {e}") from e
    roles: dict[str, Role] = {}
    for code, spec in raw.items():
        if not isinstance(spec, dict):
            raise RolesError(f"{path}: [{code}] must be a table")
        try:
            level = Level(spec["level"])
        except (KeyError, ValueError) as e:
            raise RolesError(f"{path}: [{code}].level must be one of {[lv.value for lv in Level]}") from e
        roles[code] = Role(
            code=code,
            label=str(spec.get("label", code)),
            level=level,
            aliases=tuple(spec.get("aliases", ())),
            superiors=tuple(spec.get("superiors", ())),
        )
    for role in roles.values():
        for sup in role.superiors:
            if sup not in roles:
                raise RolesError(f"{path}: [{role.code}].superiors names unknown role {sup!r}")
    return Roles(roles)
