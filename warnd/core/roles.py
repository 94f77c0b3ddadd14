"""Role vocabulary: codes, Chinese labels, roster aliases, superiors (roles.toml, read by
warnd.config.roles)."""

from __future__ import annotations

from dataclasses import dataclass

from warnd.core.domain import Level


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
