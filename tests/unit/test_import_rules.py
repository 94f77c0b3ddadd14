"""The import rules of docs/architecture.md, held against the code. Every import counts,
including those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package prefix → prefixes it must never import
RULES: dict[str, tuple[str, ...]] = {
    # The pure core: decisions with no I/O.
    "warnd.core": ("warnd.db", "warnd.engine", "warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api",
                   "warnd.app", "warnd.views", "warnd.roster", "warnd.cli", "warnd.config", "channels", "devtools",
                   "sqlalchemy", "sqlmodel", "aiohttp", "aiomqtt", "alembic"),
    # Message formats: parsing is pure too.
    "warnd.cap": ("warnd.db", "warnd.engine", "warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api",
                  "warnd.app", "warnd.views", "warnd.roster", "warnd.config", "channels", "devtools", "sqlalchemy",
                  "sqlmodel", "aiohttp"),
    # The schema knows nothing of who writes it.
    "warnd.db": ("warnd.engine", "warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api", "warnd.app",
                 "warnd.views", "warnd.roster", "channels", "devtools"),
    # The engine is below everything that plugs into it.
    "warnd.engine": ("warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api", "warnd.app", "warnd.views",
                     "warnd.roster", "warnd.public", "warnd.cli", "devtools"),
    # Channels are transports: they know the channel contract and nothing of the engine.
    "channels": ("warnd.db", "warnd.engine", "warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api",
                 "warnd.app", "warnd.views", "warnd.roster", "warnd.core", "warnd.cli", "devtools"),
    # Only the composition root (and the CLI/API above it) wires parts together.
    "warnd.feeds": ("warnd.speakers", "warnd.confirm", "warnd.api", "warnd.app", "warnd.cli", "devtools"),
    "warnd.speakers": ("warnd.feeds", "warnd.confirm", "warnd.api", "warnd.app", "devtools"),
    "warnd.confirm": ("warnd.feeds", "warnd.speakers", "warnd.api", "warnd.app", "warnd.cli", "devtools"),
    "warnd.roster": ("warnd.engine", "warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.api", "warnd.app",
                     "devtools"),
    "warnd.public": ("warnd.feeds", "warnd.speakers", "warnd.confirm", "warnd.roster", "warnd.api", "warnd.app",
                     "devtools"),
    # Nothing in the product imports the development tools.
    "warnd": ("devtools",),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, mod: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    package = mod.rsplit(".", 1)[0] if path.name != "__init__.py" else mod
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def product_files() -> list[Path]:
    files = [p for p in (ROOT / "warnd").rglob("*.py") if "migrations" not in p.parts]
    return sorted(files + list((ROOT / "channels").rglob("*.py")))


def violations_of(path: Path, mod: str) -> list[str]:
    imported = imports_of(path, mod)
    out = []
    for owner, forbidden in RULES.items():
        if not _within(mod, owner):
            continue
        for name in sorted(imported):
            for bad in forbidden:
                if _within(name, bad):
                    out.append(f"{mod} ({owner}) imports {name}")
    return out


def violations() -> list[str]:
    return sorted({v for path in product_files() for v in violations_of(path, module_name(path))})


def test_the_import_rules_hold() -> None:
    assert violations() == []


@pytest.mark.parametrize(("mod", "code", "expected"), [
    ("warnd.core.probe", "def f():\n    from warnd.engine import outbox\n", "imports warnd.engine.outbox"),
    ("warnd.core.probe", "import sqlalchemy\n", "imports sqlalchemy"),
    ("warnd.engine.probe", "from ..feeds import service\n", "imports warnd.feeds"),
    ("channels.probe", "from warnd.db.models import Delivery\n", "imports warnd.db.models"),
    ("warnd.api.probe", "import devtools.simulators\n", "imports devtools.simulators"),
])
def test_the_checker_finds_a_forbidden_import(tmp_path: Path, mod: str, code: str, expected: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(code, encoding="utf-8")
    assert any(expected in v for v in violations_of(probe, mod))
