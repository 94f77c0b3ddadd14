"""`warnd public import FILE [--kind K] [--source S] [--deactivate-missing] [--format json]`.

Exit status: 0 every row imported, 1 some rows were rejected (reported in Chinese), 2 the file
could not be used at all (nothing was written).
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
    p = sub.add_parser("public", help="public recipient lists (docs/public.md)")
    ps = p.add_subparsers(dest="public_command", required=True)
    pi = ps.add_parser("import", help="import a public list (CSV or XLSX)")
    pi.add_argument("file")
    pi.add_argument("--database", help="database URL (overrides the settings file)")
    pi.add_argument("--kind", default="danger_zone",
                    help="list kind for rows without a 名单类型 column: danger_zone, grid, subscriber, visitor, worker")
    pi.add_argument("--source", default="", help="来源 for rows without one (default: the file name)")
    pi.add_argument("--deactivate-missing", action="store_true",
                    help="deactivate numbers of this list (same file name) that are no longer in it")
    pi.add_argument("--format", choices=("text", "json"), default="text")

    def run(args: argparse.Namespace) -> int:
        if not Path(args.file).is_file():
            from warnd.config.errors import StartupError

            raise StartupError(f"{args.file}: no such file")
        return asyncio.run(_import(settings_of(args), Path(args.file), args))

    pi.set_defaults(func=run)


async def _import(settings: Any, path: Path, args: argparse.Namespace) -> int:
    from warnd.clock import utcnow
    from warnd.db.engine import Database
    from warnd.public.importer import import_list
    from warnd.public.lists import ListError

    db = Database(settings.database.url)
    try:
        await db.upgrade()
        report = await import_list(db, path, now=utcnow(), kind=args.kind, source=args.source,
                                   deactivate_missing=args.deactivate_missing)
    except ListError as e:
        if args.format == "json":
            print(json.dumps({"file": str(path), "ok": False, "error": str(e)}, ensure_ascii=False, indent=2))
        else:
            print(f"公众名单未导入：{e}", file=sys.stderr)
        return 2
    finally:
        await db.close()
    print(json.dumps(report.as_json(), ensure_ascii=False, indent=2) if args.format == "json" else report.text())
    return 0 if report.ok else 1
