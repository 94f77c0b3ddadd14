"""`warnd user ...` as an operator runs it: the password on stdin, the token printed once."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from warnd.auth.service import AuthService
from warnd.cli import main
from warnd.config import AuthCfg
from warnd.db.engine import Database


def warnd(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db_url: str, *args: str,
          stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main([*args, "--database", db_url])
    out, err = capsys.readouterr()
    return code, out, err


def bearer_name(db_url: str, token: str) -> str | None:
    async def check() -> str | None:
        db = Database(db_url)
        try:
            who = await AuthService(db, AuthCfg()).bearer(token)
            return f"{who.name}:{who.role.value}" if who else None
        finally:
            await db.close()
    return asyncio.run(check())


def test_add_list_token_disable(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no ./warnd.toml
    code, out, _ = warnd(capsys, monkeypatch, db_url, "user", "add", "wangfang", "--role", "approver",
                         "--display-name", "王芳", stdin="long-enough-password\n")
    assert code == 0 and "wangfang" in out and "带班领导" in out
    code, _, err = warnd(capsys, monkeypatch, db_url, "user", "add", "wangfang", "--role", "auditor",
                         stdin="long-enough-password\n")
    assert code == 2 and "already exists" in err
    code, _, err = warnd(capsys, monkeypatch, db_url, "user", "add", "li", "--role", "auditor", stdin="short\n")
    assert code == 2 and "at least 10" in err

    code, out, err = warnd(capsys, monkeypatch, db_url, "user", "token", "create", "wangfang", "--label", "脚本")
    token = out.strip()
    assert code == 0 and token.startswith("wdt_") and "\n" not in token and "shown once" in err
    assert token not in err
    assert bearer_name(db_url, token) == "wangfang:approver"

    code, out, _ = warnd(capsys, monkeypatch, db_url, "user", "list")
    assert code == 0 and "wangfang" in out and "approver" in out and "王芳" in out and token not in out
    code, out, _ = warnd(capsys, monkeypatch, db_url, "user", "disable", "wangfang")
    assert code == 0
    assert bearer_name(db_url, token) is None
    code, out, _ = warnd(capsys, monkeypatch, db_url, "user", "list")
    assert "no " in out.splitlines()[1]


def test_a_password_cannot_be_given_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["user", "add", "zhao", "--role", "auditor", "--password", "long-enough-password"])
    assert "unrecognized arguments" in capsys.readouterr().err
