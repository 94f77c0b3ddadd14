"""`warnd roster import FILE [--format json]` and `warnd check [--format json]`.

Exit status: 0 every row imported (warnings and skipped rows allowed), 1 some rows were not
imported, 2 the file could not be used at all (nothing was written).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_cli(sub: Any, settings_of: Callable[[argparse.Namespace], Any]) -> None:
    """Register `warnd roster ...` on the main parser's subparsers."""
    r = sub.add_parser("roster", help="regions, officials and loudspeakers (docs/roster.md)")
    rs = r.add_subparsers(dest="roster_command", required=True)
    ri = rs.add_parser("import", help="import a roster (CSV or XLSX)")
    ri.add_argument("file")
    ri.add_argument("--database", help="database URL (overrides the settings file)")
    ri.add_argument("--format", choices=("text", "json"), default="text",
                    help="text (Chinese, for people) or json (for scripts)")
    ri.add_argument("--deactivate-missing", action="store_true",
                    help="set people in the database but not in this file to 离岗")

    def run_import(args: argparse.Namespace) -> int:
        return asyncio.run(_import(settings_of(args), Path(args.file), args.format, args.deactivate_missing))

    ri.set_defaults(func=run_import)


def _path(p: str) -> Path | None:
    return Path(p) if p else None


async def _import(settings: Any, path: Path, fmt: str, deactivate_missing: bool) -> int:
    from warnd.clock import utcnow
    from warnd.core.roles import load_roles
    from warnd.db.engine import Database
    from warnd.roster import RosterError, format_report, import_roster, report_json

    db = Database(settings.database.url)
    try:
        await db.upgrade()
        report = await import_roster(db, path, now=utcnow(), roles=load_roles(_path(settings.policy.roles)),
                                     deactivate_missing=deactivate_missing)
    except RosterError as e:
        if fmt == "json":
            print(json.dumps({"file": str(path), "ok": False, "error": str(e)}, ensure_ascii=False, indent=2))
        else:
            print(f"名单未导入：{e}", file=sys.stderr)
        return 2
    finally:
        await db.close()
    if fmt == "json":
        print(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


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
    from warnd.core.policy import load_policy
    from warnd.core.roles import load_roles
    from warnd.db.engine import Database
    from warnd.roster.readiness import (
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
