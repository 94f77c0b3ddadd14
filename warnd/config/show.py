"""`warnd config show` (what was loaded, from where, secrets masked) and `warnd init DIR`
(an editable copy of the shipped defaults)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from warnd.config.compose import load_compose_texts
from warnd.config.errors import ConfigError
from warnd.config.files import (
    DEFAULT_FILES,
    EXAMPLE_SETTINGS,
    SETTINGS_FILE,
    ConfigLocation,
    package_default,
)
from warnd.config.policy import load_policy
from warnd.config.roles import load_roles
from warnd.config.settings import Settings, env_overrides
from warnd.config.sources import load_sources
from warnd.config.stations import load_stations
from warnd.config.templates import load_templates
from warnd.config.vocabulary import load_vocabulary, load_wording

MASK = "****"
T = TypeVar("T")


def _is_secret(model: BaseModel, key: str) -> bool:
    extra = type(model).model_fields[key].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


def _mask(key: str, value: Any) -> Any:
    if key == "url" and isinstance(value, str):  # a database URL: only its password
        try:
            return make_url(value).render_as_string(hide_password=True)
        except ArgumentError:  # not a URL: mask all of it
            return MASK
    if isinstance(value, tuple | list):
        return [MASK for _ in value]
    return MASK if value else value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render_settings(settings: Settings, from_env: Mapping[str, str]) -> list[str]:
    """The effective settings as TOML, secrets masked, values from the environment marked."""
    out: list[str] = []

    def table(model: BaseModel, path: str) -> None:
        scalars = [(k, getattr(model, k)) for k in type(model).model_fields
                   if not isinstance(getattr(model, k), BaseModel)]
        if scalars and path:
            out.append(f"\n[{path}]")
        for key, value in scalars:
            dotted = f"{path}.{key}"
            shown = _mask(key, value) if _is_secret(model, key) else value
            note = f"  # from {from_env[dotted]}" if dotted in from_env else ""
            out.append(f"{key} = {_toml(shown)}{note}")
        for key in type(model).model_fields:
            sub = getattr(model, key)
            if isinstance(sub, BaseModel):
                table(sub, f"{path}.{key}" if path else key)

    table(settings, "")
    return out


def loaded_files(settings: Settings, where: ConfigLocation) -> list[tuple[str, str, str]]:
    """(what, path, origin) for the settings file and every file the settings lead to."""
    rows = [("settings", str(where.settings_file) if where.settings_file else "(none)",
             where.origin if where.settings_file else "built-in defaults")]
    for dotted, name in DEFAULT_FILES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(settings, section), key)
        if not value:
            rows.append((name, str(package_default(name)), "package default"))
        elif where.directory is not None and Path(value) == where.directory / name:
            rows.append((name, value, f"beside {SETTINGS_FILE}"))
        else:
            rows.append((name, value, f"[{section}] {key}"))
    for key in ("sources", "stations"):
        value = getattr(settings.feeds, key)
        rows.append((f"{key}.toml", value or "(none)", f"[feeds] {key}" if value else "not configured"))
    return rows


def check_files(settings: Settings) -> list[str]:
    """Every problem of every file the settings lead to (empty: all load)."""
    problems: list[str] = []

    def attempt(load: Callable[[], T]) -> T | None:
        try:
            return load()
        except ConfigError as e:
            problems.extend(e.lines)
            return None

    def path(p: str) -> Path | None:
        return Path(p) if p else None

    pol = settings.policy
    roles = attempt(partial(load_roles, path(pol.roles)))
    if roles is not None:
        attempt(partial(load_policy, path(pol.path), roles))
    attempt(partial(load_templates, path(pol.templates)))
    vocab = attempt(partial(load_vocabulary, path(pol.vocabulary)))
    if vocab is not None:
        attempt(partial(load_compose_texts, path(settings.console.compose_texts), vocab.codes))
    attempt(partial(load_wording, path(pol.vocabulary)))
    if settings.feeds.sources and vocab is not None:
        attempt(partial(load_sources, Path(settings.feeds.sources), known_hazards=vocab.codes))
    if settings.feeds.stations:
        attempt(partial(load_stations, Path(settings.feeds.stations)))
    from warnd.roster.reading import RosterError, load_header_aliases

    try:
        load_header_aliases(path(settings.roster.headers))
    except RosterError as e:
        problems.append(str(e))
    return problems


def show(settings: Settings, where: ConfigLocation, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The text of `warnd config show`, and the problems found loading the files."""
    rows = loaded_files(settings, where)
    width = max(len(r[0]) for r in rows)
    lines = ["# loaded"] + [f"# {what.ljust(width)}  {p}  ({origin})" for what, p, origin in rows]
    from_env = env_overrides(env)
    if from_env:
        lines.append("# from the environment: " + ", ".join(f"{v} → {k}" for k, v in from_env.items()))
    lines += render_settings(settings, from_env)
    return "\n".join(lines) + "\n", check_files(settings)


INIT_FILES = (*DEFAULT_FILES.values(),)


def init(directory: Path, force: bool = False) -> list[Path]:
    """Write warnd.toml (the annotated example) and a copy of every shipped default into
    `directory`. Existing files are kept unless `force`."""
    targets = {SETTINGS_FILE: package_default(EXAMPLE_SETTINGS),
               **{name: package_default(name) for name in INIT_FILES}}
    existing = [directory / n for n in targets if (directory / n).exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]}: already exists (use --force to overwrite)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, src in targets.items():
            shutil.copyfile(src, directory / name)
    except OSError as e:
        raise ConfigError(f"{e.filename or directory}: cannot write: {e.strerror or e}") from None
    return [directory / n for n in targets]
