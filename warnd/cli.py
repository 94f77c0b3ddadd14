"""`warnd` command line: init, config show, serve, db upgrade, roster import, check, alert
submit, speakers status, user.

Every configuration or start-up error is printed as one line per problem (file, key, what is
wrong) and exits 2; no traceback unless --traceback. The demo and the simulators are
`warnd-dev` (devtools/), not part of the product."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from warnd.config import ConfigError, Settings, SettingsError
from warnd.config.errors import StartupError
from warnd.config.settings import load_config

# aiosqlite runs each connection in a thread; with the default 5 ms GIL switch interval every
# database round trip can wait that long for a busy event loop to let go.
SWITCH_INTERVAL = 0.0005


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings, args.where = load_config(getattr(args, "config", None))
    if getattr(args, "database", None):
        settings = settings.model_copy(update={"database": settings.database.model_copy(
            update={"url": args.database})})
    if getattr(args, "clock", None):
        settings = settings.model_copy(update={"clock": settings.clock.model_copy(update={"spec": args.clock})})
    if getattr(args, "instance", None):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", args.instance):
            raise SettingsError(f"--instance {args.instance!r}: use letters, digits, - and _ (at most 32)")
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"instance": args.instance})})
    args.settings = settings  # for error messages that name the database
    return settings


def _path(p: str) -> Path | None:
    return Path(p) if p else None


def cmd_init(args: argparse.Namespace) -> int:
    from warnd.config.show import init

    directory = Path(args.directory)
    written = init(directory, force=args.force)
    for p in written:
        print(f"wrote {p}")
    print(f"edit {directory / 'warnd.toml'}, then: warnd --config {directory} config show")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from warnd.config.show import show

    settings, where = load_config(args.config)
    text, problems = show(settings, where, os.environ)
    sys.stdout.write(text)
    if problems:
        raise ConfigError("\n".join(problems))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from warnd.api.app import make_app
    from warnd.api.server import serve
    from warnd.app import App
    from warnd.logging import configure_logging

    configure_logging()
    sys.setswitchinterval(SWITCH_INTERVAL)
    settings = settings_from_args(args)
    port = args.port if args.port is not None else settings.server.port

    async def main() -> None:
        app = App.build(settings)
        await app.start()
        try:
            served = await serve(make_app(app), settings.server, settings.server.host, port)  # limits per client
        except OSError as e:
            await app.stop()
            raise StartupError(f"server: cannot listen on {settings.server.host}:{port}: "
                               f"{e.strerror or e}") from None
        # --port 0: print the port actually bound
        print(f"warnd serving on http://{settings.server.host}:{served.site.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await served.close()
        await app.stop()

    asyncio.run(main())
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from warnd.db.engine import upgrade

    settings = settings_from_args(args)
    if args.verbose:
        import logging

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    upgrade(settings.database.url, verbose=args.verbose)
    print(f"database at head: {settings.database.url.split('@')[-1]}")
    return 0


def cmd_alert_submit(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    url = (args.url or f"http://{settings.server.host}:{settings.server.port}").rstrip("/") + "/api/v1/alerts"
    token = args.token or (settings.api.tokens[0] if settings.api.tokens else "")
    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise StartupError(f"{args.file}: cannot read: {e.strerror or e}") from None
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
    p.add_argument("--config", help="warnd.toml, or a folder holding it and the policy files "
                   "(default: $WARND_CONFIG, else /etc/warnd/, else the built-in defaults)")
    p.add_argument("--traceback", action="store_true", help="show the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("init", help="write an editable copy of the default configuration into DIR")
    i.add_argument("directory", metavar="DIR")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.set_defaults(func=cmd_init)

    c = sub.add_parser("config", help="configuration")
    cs = c.add_subparsers(dest="config_command", required=True)
    show = cs.add_parser("show", help="what is loaded from where (secrets masked), checking every file")
    show.set_defaults(func=cmd_config_show)

    s = sub.add_parser("serve", help="run the engine and its HTTP API")
    s.add_argument("--port", type=int)
    s.add_argument("--database", help="database URL (overrides the settings file)")
    s.add_argument("--clock", help="system | scaled:SPEED (drills and tests)")
    s.add_argument("--instance", help="this instance's name when several share one database (overrides "
                   "[server] instance)")
    s.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance")
    dbs = db.add_subparsers(dest="db_command", required=True)
    up = dbs.add_parser("upgrade", help="apply migrations")
    up.add_argument("--database")
    up.add_argument("-v", "--verbose", action="store_true", help="show each migration applied")
    up.set_defaults(func=cmd_db_upgrade)

    from warnd.public.cli import add_cli as add_public_cli
    from warnd.roster.cli import add_cli as add_roster_cli
    from warnd.views.readiness_cli import add_check_cli

    add_roster_cli(sub, settings_from_args)  # warnd roster import
    add_check_cli(sub, settings_from_args)  # warnd check
    add_public_cli(sub, settings_from_args)  # warnd public import

    a = sub.add_parser("alert", help="warnings")
    as_ = a.add_subparsers(dest="alert_command", required=True)
    sb = as_.add_parser("submit", help="submit a CAP file to a running warnd")
    sb.add_argument("file")
    sb.add_argument("--url", help="warnd base URL (default from settings)")
    sb.add_argument("--token", help="API token (default: the first in settings)")
    sb.set_defaults(func=cmd_alert_submit)

    from warnd.speakers.cli import add_cli as add_speakers_cli

    add_speakers_cli(sub, settings_from_args)  # warnd speakers status
    from warnd.auth.cli import add_cli as add_user_cli

    add_user_cli(sub, settings_from_args)  # warnd user add|list|disable|unlock|password|token

    from warnd.audit.cli import add_cli as add_report_cli

    add_report_cli(sub, settings_from_args)  # warnd report
    return p


def explain_failure(e: BaseException, args: argparse.Namespace) -> tuple[int, list[str]]:
    """(exit status, lines) for an error that stopped a command."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(e, SettingsError):
        where = getattr(args, "where", None)
        source = where.settings_file if where is not None and where.settings_file else "built-in settings"
        return 2, [f"configuration error: {source}: {line}" for line in e.lines]
    if isinstance(e, ConfigError):
        return 2, [f"configuration error: {line}" for line in e.lines]
    if isinstance(e, StartupError):
        return 2, [f"error: {e}"]
    if isinstance(e, SQLAlchemyError):
        settings = getattr(args, "settings", None)
        where = settings.database.url.split("@")[-1] if settings is not None else "the database"
        cause = e.orig if isinstance(e, DBAPIError) else e
        reason = " ".join(str(cause).split())  # drivers' messages span lines
        return 2, [f"error: database {where}: {reason}"]
    if isinstance(e, OSError):
        what = f"{e.filename}: " if e.filename else ""
        return 2, [f"error: {what}{e.strerror or e}"]
    return 1, [f"error: unexpected {type(e).__name__}: {e} (run with --traceback for details)"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.traceback:
            traceback.print_exc()
        status, lines = explain_failure(e, args)
        for line in lines:
            print(line, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
