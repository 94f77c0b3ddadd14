"""`warnd report`: the audit report of one warning or of a storm (a time window)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from warnd.audit.export import FORMATS


def parse_time(text: str, utc_offset_hours: float) -> datetime:
    """ISO 8601 ("2026-07-01T10:00", "2026-07-01 10:00+08:00", "2026-07-01"); without an
    offset the time is local (report.utc_offset_hours)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time like 2026-07-01T10:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone(timedelta(hours=utc_offset_hours)))
    return t.astimezone(UTC)


def parse_formats(text: str) -> list[str]:
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(FORMATS)} (comma-separated)")
    return out


def parse_target(text: str) -> float:
    """0.95, 95 or 95%: a share of places."""
    try:
        v = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share like 0.95 or 95%") from None
    v = v / 100 if v > 1 or text.strip().endswith("%") else v
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the target must be above 0 and at most 100%")
    return v


def add_cli(sub: Any, settings_of: Callable[[argparse.Namespace], Any]) -> None:
    """Register `warnd report` on the main parser's subparsers."""
    p = sub.add_parser("report", help="audit report of one warning or a storm (docs/audit.md)",
                       description="Coverage, 期/人次, time to confirm, escalations, who never confirmed "
                                   "and which loudspeakers never played, counted from the event log.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--alert", type=int, metavar="ID", help="one warning (its alert id)")
    which.add_argument("--from", dest="start", metavar="T1",
                       help="a storm: every warning accepted from T1 (ISO time; local unless it has an offset)")
    p.add_argument("--to", dest="end", metavar="T2", help="... until T2 (exclusive); default now")
    p.add_argument("--out", default=".", help="output folder (default: the current folder)")
    p.add_argument("--format", dest="formats", type=parse_formats, default=["html", "xlsx"],
                   help=f"comma-separated: {', '.join(FORMATS)} (default html,xlsx)")
    p.add_argument("--target", type=parse_target, help="coverage target, e.g. 95%% (default: settings, 95%%)")
    p.add_argument("--show-phones", action="store_true",
                   help="print officials' phone numbers in full (default: masked, 139****0001)")
    p.add_argument("--database", help="database URL (overrides the settings file)")

    def run(args: argparse.Namespace) -> int:
        if args.end and not args.start:
            p.error("--to needs --from")
        return asyncio.run(_report(args, settings_of(args)))

    p.set_defaults(func=run)


async def _report(args: argparse.Namespace, settings: Any) -> int:
    from dataclasses import replace

    from jinja2 import TemplateError

    from warnd.audit.export import write_report
    from warnd.audit.labels import LabelsError
    from warnd.audit.load import ScopeError
    from warnd.audit.rows import Scope
    from warnd.audit.service import make_report, options_from_settings
    from warnd.clock import utcnow
    from warnd.config import load_roles
    from warnd.db.engine import Database

    options = options_from_settings(settings, may_see_phones=args.show_phones)
    if args.target is not None:
        options = replace(options, coverage_target=args.target)
    now = utcnow()
    if args.alert is not None:
        scope = Scope(alert_id=args.alert)
    else:
        try:
            start = parse_time(args.start, options.utc_offset_hours)
            end = parse_time(args.end, options.utc_offset_hours) if args.end else now
        except ValueError as e:
            print(f"report not written: {e}", file=sys.stderr)
            return 2
        scope = Scope(start=start, end=end)
    roles = load_roles(Path(settings.policy.roles) if settings.policy.roles else None)
    db = Database(settings.database.url)
    try:
        await db.upgrade()
        report = await make_report(db, scope, now=now, options=options,
                                   role_labels={c: r.label for c, r in roles.by_code.items()})
    except (ScopeError, LabelsError) as e:
        print(f"report not written: {e}", file=sys.stderr)
        return 2
    finally:
        await db.close()
    try:
        paths = write_report(report, Path(args.out), args.formats, options.html_template)
    except (TemplateError, OSError) as e:  # an edited template with a mistake, a folder we cannot write
        print(f"report not written: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(headline(report))
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


def headline(report: Any) -> str:
    """One line per kind: 实战 3期 1234人次，覆盖率 96.0%（目标 95%，达标）."""
    from warnd.audit.display import display

    summary = {r["key"]: r for r in report.table("summary").rows}
    col = report.table("summary").columns
    parts = []
    for kind in ("real", "drill"):
        if summary["warnings"][kind] is None:
            continue
        c = next(x for x in col if x.key == kind)
        met = summary["coverage_met"][kind]
        verdict = report.words["none"] if met is None else report.words["met" if met else "not_met"]
        parts.append(f"{c.label} {summary['warnings'][kind]}期 {summary['person_times'][kind]}人次，"
                     f"覆盖率 {display(report, c, summary['coverage'])}"
                     f"（目标 {report.coverage_target * 100:g}%，{verdict}）")
    return "；".join(parts) or "范围内没有预警"
