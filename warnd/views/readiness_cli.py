"""`warnd check [--format json]`: is the county ready for a storm? The roster against the
policy, loudspeakers and sources. Exit status 0 ready, 1 warnings, 2 errors (docs/roster.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _path(p: str) -> Path | None:
    return Path(p) if p else None


def add_check_cli(sub: Any, settings_of: Callable[[argparse.Namespace], Any]) -> None:
    """Register `warnd check`: is the roster ready for a storm? Exit 0 ready, 1 warnings, 2 errors."""
    c = sub.add_parser("check", help="readiness before a storm: roster against policy, speakers, sources "
                                     "(exit 0 ready, 1 warnings, 2 errors; docs/roster.md)")
    c.add_argument("--database", help="database URL (overrides the settings file)")
    c.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (Chinese, for people) or json (for scripts and the console)")

    def run_check(args: argparse.Namespace) -> int:
        return asyncio.run(_check(settings_of(args), args.format))

    c.set_defaults(func=run_check)


async def _check(settings: Any, fmt: str) -> int:
    from datetime import timedelta

    from warnd.clock import utcnow
    from warnd.config import load_policy, load_roles
    from warnd.db.engine import Database
    from warnd.views.readiness import (
        Names,
        check_readiness,
        format_readiness,
        readiness_json,
        source_kinds,
    )

    roles = load_roles(_path(settings.policy.roles))
    policy = load_policy(_path(settings.policy.path), roles)
    db = Database(settings.database.url)
    try:
        await db.upgrade()
        result, inp = await check_readiness(
            db, policy, utcnow(), speaker_stale_after=timedelta(seconds=settings.speakers.stale_after_seconds),
            sources=source_kinds(_path(settings.feeds.sources)))
    finally:
        await db.close()
    names = Names(inp.regions, roles)
    county = next((r.name for r in inp.regions.values() if r.parent_code is None), settings.county.name)
    if fmt == "json":
        print(json.dumps(readiness_json(result, names), ensure_ascii=False, indent=2))
    else:
        print(format_readiness(result, names, county))
    return result.exit_code
