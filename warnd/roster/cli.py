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
        if not Path(args.file).is_file():
            from warnd.config.errors import StartupError

            raise StartupError(f"{args.file}: no such file")
        return asyncio.run(_import(settings_of(args), Path(args.file), args.format, args.deactivate_missing))

    ri.set_defaults(func=run_import)


def _path(p: str) -> Path | None:
    return Path(p) if p else None


async def _import(settings: Any, path: Path, fmt: str, deactivate_missing: bool) -> int:
    from warnd.clock import utcnow
    from warnd.config import ConfigError, load_roles
    from warnd.db.engine import Database
    from warnd.roster import (
        RosterError,
        format_report,
        import_roster,
        load_header_aliases,
        report_json,
    )

    roles = load_roles(_path(settings.policy.roles))
    try:
        headers = load_header_aliases(_path(settings.roster.headers))
    except RosterError as e:
        raise ConfigError(str(e)) from None
    db = Database(settings.database.url)
    try:
        await db.upgrade()
        report = await import_roster(db, path, now=utcnow(), roles=roles, headers=headers,
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
