"""`warnd` command line: serve, db upgrade, roster import, alert submit, speakers status.

The demo and the simulators are `warnd-dev` (devtools/), not part of the product."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from warnd.config import ConfigError, Settings, load_settings

# aiosqlite runs each connection in a thread; with the default 5 ms GIL switch interval every
# database round trip can wait that long for a busy event loop to let go.
SWITCH_INTERVAL = 0.0005


def settings_from_args(args: argparse.Namespace) -> Settings:
    path = Path(args.config) if getattr(args, "config", None) else None
    if path is None and Path("warnd.toml").exists():
        path = Path("warnd.toml")
    settings = load_settings(path)
    from dataclasses import replace

    if getattr(args, "database", None):
        settings = replace(settings, database=replace(settings.database, url=args.database))
    if getattr(args, "clock", None):
        settings = replace(settings, clock=replace(settings.clock, spec=args.clock))
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from warnd.api.app import make_app
    from warnd.engine.service import Engine
    from warnd.logging import configure_logging

    configure_logging()
    sys.setswitchinterval(SWITCH_INTERVAL)
    settings = settings_from_args(args)
    port = args.port if args.port is not None else settings.server.port

    async def main() -> None:
        engine = Engine.build(settings)
        await engine.start()
        runner = web.AppRunner(make_app(engine), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.server.host, port).start()
        print(f"warnd serving on http://{settings.server.host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        await engine.stop()

    asyncio.run(main())
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from warnd.db.engine import upgrade

    settings = settings_from_args(args)
    upgrade(settings.database.url)
    print(f"database at head: {settings.database.url.split('@')[-1]}")
    return 0


def cmd_roster_import(args: argparse.Namespace) -> int:
    from warnd.clock import utcnow
    from warnd.db.engine import Database
    from warnd.roster import RosterError, format_report, import_roster

    settings = settings_from_args(args)

    async def main() -> int:
        db = Database(settings.database.url)
        try:
            await db.upgrade()
            report = await import_roster(db, Path(args.file), now=utcnow())
        except RosterError as e:
            print(f"roster not imported: {e}", file=sys.stderr)
            return 2
        finally:
            await db.close()
        print(format_report(report))
        return 0 if report.ok else 1

    return asyncio.run(main())


def cmd_alert_submit(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    url = (args.url or f"http://{settings.server.host}:{settings.server.port}").rstrip("/") + "/api/v1/alerts"
    token = args.token or (settings.api.tokens[0] if settings.api.tokens else "")
    data = Path(args.file).read_bytes()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/cap+xml", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
            status = resp.status
    except urllib.error.HTTPError as e:
        print(e.read().decode("utf-8", "replace"), file=sys.stderr)
        return 1
    except urllib.error.URLError as e:
        print(f"cannot reach warnd at {url}: {e.reason}", file=sys.stderr)
        return 1
    print(json.dumps(body, ensure_ascii=False, indent=2))
    print("accepted" if status == 201 else "already received (no new messages sent)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="warnd", description="Early-warning dissemination and 叫应 engine.")
    p.add_argument("--config", help="settings file (default: ./warnd.toml if present, else built-in defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the engine and its HTTP API")
    s.add_argument("--port", type=int)
    s.add_argument("--database", help="database URL (overrides the settings file)")
    s.add_argument("--clock", help="system | scaled:SPEED (drills and tests)")
    s.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance")
    dbs = db.add_subparsers(dest="db_command", required=True)
    up = dbs.add_parser("upgrade", help="apply migrations")
    up.add_argument("--database")
    up.set_defaults(func=cmd_db_upgrade)

    r = sub.add_parser("roster", help="regions and officials")
    rs = r.add_subparsers(dest="roster_command", required=True)
    ri = rs.add_parser("import", help="import a roster (CSV or XLSX)")
    ri.add_argument("file")
    ri.add_argument("--database")
    ri.set_defaults(func=cmd_roster_import)

    a = sub.add_parser("alert", help="warnings")
    as_ = a.add_subparsers(dest="alert_command", required=True)
    sb = as_.add_parser("submit", help="submit a CAP file to a running warnd")
    sb.add_argument("file")
    sb.add_argument("--url", help="warnd base URL (default from settings)")
    sb.add_argument("--token", help="API token (default: the first in settings)")
    sb.set_defaults(func=cmd_alert_submit)

    from warnd.speakers.cli import add_cli as add_speakers_cli

    add_speakers_cli(sub, settings_from_args)  # warnd speakers status
    from warnd.audit.cli import add_cli as add_report_cli

    add_report_cli(sub, settings_from_args)  # warnd report
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
