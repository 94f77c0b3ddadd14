"""The command line as an operator meets it: `warnd init`, `warnd config show`, and every
configuration or start-up error as one line per problem (file, key, what is wrong), never a
traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.samples import sample
from warnd.cli import main
from warnd.config import package_default

DEFAULT_FILES = ("policy.toml", "roles.toml", "templates.toml", "vocabulary.toml", "roster-headers.toml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def run_process(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`warnd ARGV` in a child process, as a shell would run it (no settings from the caller)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WARND_", "INVOCATION_ID", "JOURNAL_"))}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-m", "warnd.cli", *argv], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine's /etc/warnd and environment stay out of the tests."""
    monkeypatch.setattr("warnd.config.files.SYSTEM_DIR", tmp_path / "no-etc-warnd")
    for k in list(os.environ):
        if k.startswith("WARND_"):
            monkeypatch.delenv(k)


def test_init_writes_an_editable_copy_and_refuses_to_overwrite(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    d = tmp_path / "etc"
    status, out, err = run(capsys, "init", str(d))
    assert status == 0 and err == []
    for name in DEFAULT_FILES:
        assert (d / name).read_bytes() == package_default(name).read_bytes()
    assert (d / "warnd.toml").read_bytes() == package_default("warnd.example.toml").read_bytes()
    assert f"wrote {d / 'warnd.toml'}" in out

    (d / "policy.toml").write_text("# mine\n", encoding="utf-8")
    status, _, err = run(capsys, "init", str(d))
    assert status == 2
    assert err == [f"configuration error: {d / 'warnd.toml'}: already exists (use --force to overwrite)"]
    assert (d / "policy.toml").read_text(encoding="utf-8") == "# mine\n"
    assert run(capsys, "init", str(d), "--force")[0] == 0
    assert (d / "policy.toml").read_bytes() == package_default("policy.toml").read_bytes()


def test_config_show_says_what_came_from_where_and_masks_secrets(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "warnd.toml").write_text(
        '[database]\nurl = "postgresql://warnd:db-pass-123@db.example/warnd"\n'
        '[sms.tencent]\nsecret_id = "AKIDvisible"\nsecret_key = "tencent-secret-456"\n'
        '[feeds]\nstations = "stations.toml"\n', encoding="utf-8")
    (d / "roles.toml").write_bytes(package_default("roles.toml").read_bytes())
    (d / "stations.toml").write_bytes(sample("stations.toml").read_bytes())
    monkeypatch.setenv("WARND_API_TOKENS", "api-token-789")
    status, out, err = run(capsys, "--config", str(d), "config", "show")
    assert (status, err) == (0, [])
    for secret in ("db-pass-123", "tencent-secret-456", "api-token-789"):
        assert secret not in out
    assert 'url = "postgresql://warnd:***@db.example/warnd"' in out
    assert 'secret_id = "AKIDvisible"' in out
    assert 'tokens = ["****"]  # from WARND_API_TOKENS' in out
    assert f"{d / 'warnd.toml'}  (--config)" in out
    assert f"{d / 'roles.toml'}  (beside warnd.toml)" in out
    assert f"{package_default('policy.toml')}  (package default)" in out
    assert f"{d / 'stations.toml'}  ([feeds] stations)" in out


def test_config_show_checks_every_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(
        package_default("policy.toml").read_text(encoding="utf-8").replace('"township_head"', '"township_heed"', 1),
        encoding="utf-8")
    (tmp_path / "templates.toml").write_text("[sms]\nwarning = '{headlin}'\n", encoding="utf-8")
    status, out, err = run(capsys, "--config", str(tmp_path), "config", "show")
    assert status == 2
    assert "[county]" in out  # what was loaded is still shown
    assert len(err) == 2, err
    assert err[0].startswith(f"configuration error: {tmp_path / 'policy.toml'}: rules[")
    assert err[0].endswith("unknown role 'township_heed' (not in roles.toml)")
    assert err[1] == f"configuration error: {tmp_path / 'templates.toml'}: sms.warning: uses unknown placeholder {{headlin}}"


def test_settings_errors_are_one_line_each(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "warnd.toml"
    p.write_text("[server]\nport = '8080'\n[sms]\nprovider = 'aliyun'\n", encoding="utf-8")
    status, out, err = run(capsys, "--config", str(p), "db", "upgrade")
    assert (status, out) == (2, "")
    assert err == [f"configuration error: {p}: server.port: must be a whole number, not '8080'",
                   f"configuration error: {p}: sms.provider: must be one of 'tencent' or 'twilio', not 'aliyun'"]


def test_start_up_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, _, err = run(capsys, "db", "upgrade", "--database", f"postgresql://warnd@127.0.0.1:{port}/warnd")
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: database 127.0.0.1:{port}/warnd: ") and "refused" in err[0], err

    db = f"sqlite:///{tmp_path / 'w.db'}"
    status, _, err = run(capsys, "roster", "import", str(tmp_path / "名单.xlsx"), "--database", db)
    assert (status, err) == (2, [f"error: {tmp_path / '名单.xlsx'}: no such file"])
    status, _, err = run(capsys, "alert", "submit", str(tmp_path / "warning.xml"))
    assert (status, err) == (2, [f"error: {tmp_path / 'warning.xml'}: cannot read: No such file or directory"])
    status, _, err = run(capsys, "--config", str(tmp_path / "absent"), "config", "show")
    assert (status, err) == (2, [f"configuration error: {tmp_path / 'absent'}: no such file or folder (--config)"])


@pytest.mark.slow
def test_serve_with_a_broken_policy_or_a_taken_port_says_one_line(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[ladders.standard]\nrungs = []\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'w.db'}"
    r = run_process("--config", str(tmp_path), "serve", "--database", db, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"configuration error: {tmp_path / 'policy.toml'}: ladders.standard.rungs: must be a non-empty list of rungs",
        f"configuration error: {tmp_path / 'policy.toml'}: rules: missing required key"], r.stderr

    (tmp_path / "policy.toml").unlink()
    r = run_process("--config", str(tmp_path), "serve", "--database", db, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["configuration error: built-in settings: sms.tencent: callback_token must "
                                     "be a random secret of at least 16 characters"], r.stderr

    (tmp_path / "warnd.toml").write_text('[sms.tencent]\nsecret_id = "AKID-test"\n'
                                         'callback_token = "cb-0123456789abcdef"\n', encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_process("--config", str(tmp_path), "serve", "--database", db, "--port", str(port), cwd=tmp_path,
                        env={"WARND_LOG_FORMAT": "json", "WARND_TENCENT_SECRET_KEY": "test-key"})
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1].startswith(f"error: server: cannot listen on 127.0.0.1:{port}: "), lines
    assert all(line.startswith("{") for line in lines[:-1]), lines  # JSON log lines before it
    assert not any("alembic" in line or "Running upgrade" in line for line in lines), lines


def test_db_upgrade_is_quiet_unless_asked(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    r = run_process("db", "upgrade", "--database", db, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("database at head")
    r = run_process("db", "upgrade", "--database", f"sqlite:///{tmp_path / 'v.db'}", "-v", cwd=tmp_path)
    assert r.returncode == 0 and "Running upgrade" in r.stderr
