"""`warnd user ...`: accounts and personal API tokens from the server's command line.

Passwords are never arguments (they would sit in shell history and `ps`): they are prompted
for on a terminal, or read as the first line of standard input (`... < file`, a pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

from warnd.auth.permissions import USER_ROLES, role_label

BEIJING = timedelta(hours=8)


def add_cli(sub: Any, settings_of: Callable[[argparse.Namespace], Any]) -> None:
    """Register `warnd user ...` on the main parser's subparsers."""
    up = sub.add_parser("user", help="console and API accounts (docs/console.md)")
    us = up.add_subparsers(dest="user_command", required=True)
    roles = [r.value for r in USER_ROLES]

    def db_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--database", help="database URL (overrides the settings file)")
        return p

    add = db_arg(us.add_parser("add", help="create a user (password prompted, or first line of stdin)"))
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=roles,
                     help="duty_officer 值班员 | approver 带班领导 | auditor 审计 | admin 管理员")
    add.add_argument("--display-name", default="", help="name shown in the console, e.g. 张伟")
    add.set_defaults(func=lambda a: _run(a, settings_of, _add))

    ls = db_arg(us.add_parser("list", help="list users"))
    ls.set_defaults(func=lambda a: _run(a, settings_of, _list))

    dis = db_arg(us.add_parser("disable", help="disable a user: ends their sessions, revokes their tokens"))
    dis.add_argument("name")
    dis.set_defaults(func=lambda a: _run(a, settings_of, _disable))

    unl = db_arg(us.add_parser("unlock", help="clear a user's failed logins (lift a lock-out)"))
    unl.add_argument("name")
    unl.set_defaults(func=lambda a: _run(a, settings_of, _unlock))

    pw = db_arg(us.add_parser("password", help="set a new password (ends the user's sessions)"))
    pw.add_argument("name")
    pw.set_defaults(func=lambda a: _run(a, settings_of, _password))

    tok = us.add_parser("token", help="personal API tokens for scripts")
    ts = tok.add_subparsers(dest="token_command", required=True)
    tc = db_arg(ts.add_parser("create", help="create a token (printed once, stored hashed)"))
    tc.add_argument("name")
    tc.add_argument("--label", default="", help="what the token is for, e.g. 值班脚本")
    tc.add_argument("--days", type=float, default=365, help="valid for this many days (0: no expiry)")
    tc.set_defaults(func=lambda a: _run(a, settings_of, _token_create))
    tr = db_arg(ts.add_parser("revoke", help="revoke a token by its id"))
    tr.add_argument("id", type=int)
    tr.set_defaults(func=lambda a: _run(a, settings_of, _token_revoke))


Command = Callable[[Any, argparse.Namespace, str], Awaitable[int]]


def _run(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Any], command: Command) -> int:
    from warnd.auth.service import AuthError, AuthService
    from warnd.db.engine import Database

    settings = settings_of(args)

    async def main() -> int:
        db = Database(settings.database.url)
        try:
            await db.upgrade()
            return await command(AuthService(db, settings.auth), args, _actor())
        except AuthError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 2
        finally:
            await db.close()

    return asyncio.run(main())


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def read_password(prompt: str = "password: ") -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise SystemExit("refused: the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _add(auth: Any, args: argparse.Namespace, actor: str) -> int:
    user = await auth.add_user(args.name, args.role, read_password(), args.display_name, actor=actor)
    print(f"user {user.name} added ({user.role} {role_label(user.role)}, id {user.id})")
    return 0


async def _list(auth: Any, args: argparse.Namespace, actor: str) -> int:
    users = await auth.list_users()
    print(f"{'name':<20} {'role':<14} {'active':<7} {'tokens':>6}  last login (Beijing)  display name")
    for u in users:
        last = (u.last_login_at.astimezone(UTC) + BEIJING).strftime("%Y-%m-%d %H:%M") if u.last_login_at else "-"
        print(f"{u.name:<20} {u.role:<14} {'yes' if u.active else 'no':<7} {u.tokens:>6}  {last:<20}  "
              f"{u.display_name}")
    print(f"{len(users)} users")
    return 0


async def _disable(auth: Any, args: argparse.Namespace, actor: str) -> int:
    await auth.disable_user(args.name, actor=actor)
    print(f"user {args.name} disabled: sessions ended, tokens revoked")
    return 0


async def _unlock(auth: Any, args: argparse.Namespace, actor: str) -> int:
    n = await auth.unlock(args.name, actor=actor)
    print(f"user {args.name}: {n} failed logins cleared")
    return 0


async def _password(auth: Any, args: argparse.Namespace, actor: str) -> int:
    await auth.set_password(args.name, read_password("new password: "), actor=actor)
    print(f"user {args.name}: password set, open sessions ended")
    return 0


async def _token_create(auth: Any, args: argparse.Namespace, actor: str) -> int:
    token, row = await auth.create_token(args.name, args.label, args.days or None, actor=actor)
    expires = row.expires_at.date().isoformat() if row.expires_at else "never"
    print(f"token {row.id} for {args.name} (expires {expires}); shown once, store it now:", file=sys.stderr)
    print(token)
    return 0


async def _token_revoke(auth: Any, args: argparse.Namespace, actor: str) -> int:
    await auth.revoke_token(args.id, actor=actor)
    print(f"token {args.id} revoked")
    return 0
