"""Installed like a real service: the wheel built from this checkout, installed (not
editable) into a fresh virtualenv outside the checkout, run from an empty folder against a
fresh PostgreSQL database, as an operator would on a new machine:

    warnd init etc   →  warnd config show  →  warnd db upgrade  →  warnd roster import (regions,
    then people)  →  warnd serve  →  GET /healthz  →  warnd alert submit

The SMS provider is unreachable on purpose: the warning must still be accepted (sending is
retried in the background). serve runs as under systemd (INVOCATION_ID set), so its log
lines must be JSON. Dependencies come from the machine's package indexes (pip's cache makes
later runs fast); the steps' timings are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devtools.demo.capgen import cap_xml
from support.samples import sample

CHECKOUT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("WARND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "wheel-test-token-0123456789"


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """A new, empty PostgreSQL database (not migrated: `warnd db upgrade` does that)."""
    name = f"warnd_wheel_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"{PG_ADMIN.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def sh(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
       timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{argv}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def build_wheel(out: Path, work: Path) -> Path:
    """The wheel of this checkout's files (tracked and new, not ignored ones), built in a copy
    so the checkout gets no build/ or egg-info."""
    src = work / "src"
    files = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=CHECKOUT).stdout
    for rel in filter(None, files.split("\0")):
        f = CHECKOUT / rel
        if f.is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / rel, follow_symlinks=False)
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src)
    (wheel,) = out.glob("warnd-*.whl")
    return wheel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_serves_and_accepts_a_warning(tmp_path: Path, empty_pg: str) -> None:
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 1)
        mark = now

    wheel = build_wheel(tmp_path / "dist", tmp_path)
    lap("build wheel")
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv)
    sh(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", wheel)
    warnd = venv / "bin" / "warnd"
    lap("venv + install")

    run = tmp_path / "run"  # an empty folder: nothing of the checkout is beside it
    run.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARND_", "PYTHON", "VIRTUAL_ENV", "INVOCATION_ID", "JOURNAL_STREAM"))}
    where = sh(venv / "bin" / "python", "-c", "import warnd, channels; print(warnd.__file__, channels.__file__)",
               cwd=run, env=env).stdout
    assert str(CHECKOUT) not in where and where.count(str(venv)) == 2, where

    # warnd init: the defaults come out of the installed package.
    sh(warnd, "init", "etc", cwd=run, env=env)
    port = free_port()
    dead = free_port()  # nothing listens there: the SMS provider cannot be reached
    toml = (run / "etc" / "warnd.toml").read_text(encoding="utf-8")
    for old, new in [('code = "431222"', 'code = "430999"'), ("port = 8080", f"port = {port}"),
                     ('public_base_url = "http://127.0.0.1:8080"', f'public_base_url = "http://127.0.0.1:{port}"'),
                     ('secret_id = ""', 'secret_id = "AKIDwheeltest"'), ('sdk_app_id = ""', 'sdk_app_id = "1400000000"'),
                     ('sign_name = ""', 'sign_name = "示例县防汛"'), ('template_id = ""', 'template_id = "100001"'),
                     ('endpoint = ""', f'endpoint = "127.0.0.1:{dead}"'),
                     ('callback_token = ""', 'callback_token = "cb-wheel-0123456789"')]:
        assert old in toml, old
        toml = toml.replace(old, new, 1)
    (run / "etc" / "warnd.toml").write_text(toml, encoding="utf-8")
    env.update(WARND_CONFIG=str(run / "etc"), WARND_DATABASE_URL=empty_pg, WARND_API_TOKENS=TOKEN,
               WARND_TENCENT_SECRET_KEY="tencent-secret-key-0123")

    shown = sh(warnd, "config", "show", cwd=run, env=env).stdout
    assert f"{run / 'etc' / 'warnd.toml'}  (WARND_CONFIG)" in shown
    assert f"{run / 'etc' / 'policy.toml'}  (beside warnd.toml)" in shown
    assert TOKEN not in shown and "tencent-secret-key-0123" not in shown
    up = sh(warnd, "db", "upgrade", cwd=run, env=env)
    assert up.stderr == "" and up.stdout.startswith("database at head")
    for roster in ("regions-sample.csv", "roster-sample.csv"):  # regions first: people refer to them
        shutil.copy(sample(roster), run / roster)
        sh(warnd, "roster", "import", roster, cwd=run, env=env)
    lap("init, config show, db upgrade, roster import")

    serve_log = tmp_path / "serve.log"
    with serve_log.open("w") as log:
        proc = subprocess.Popen([str(warnd), "serve"], cwd=run, env={**env, "INVOCATION_ID": "wheel-test"},
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # returns when serve is listening, or at its exit
        assert line.startswith("warnd serving on"), serve_log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
        lap("serve up")

        now = datetime.now(UTC)
        (run / "warning.xml").write_bytes(cap_xml(
            f"wheel-{uuid.uuid4().hex[:8]}", now, now + timedelta(minutes=30), "红色", "示例县气象台发布暴雨红色预警",
            "请立即组织转移。", ["430999100"], step="imminent"))
        submitted = sh(warnd, "alert", "submit", "warning.xml", cwd=run, env=env)
        assert "accepted" in submitted.stderr
        body = json.loads(submitted.stdout)
        assert body["calls"], body  # officials of 青山镇 called, although no SMS can leave
        lap("alert submit")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log_lines = serve_log.read_text(encoding="utf-8").splitlines()
    assert proc.returncode == 0, log_lines[-20:]
    assert log_lines and all(ln.startswith("{") and json.loads(ln) for ln in log_lines), log_lines[:5]
    assert not any("Running upgrade" in ln or "alembic" in ln for ln in log_lines)
    print(f"installed-wheel timings (s): {timings}, total {sum(timings.values()):.1f}")
