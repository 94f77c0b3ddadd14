"""docs/operations.md, word for word: every ```sh block of the walkthrough, in order, as one
bash script (`set -euo pipefail`) against the local PostgreSQL, with this checkout's `warnd`.

What is substituted, and why (everything else runs as written):

- paths: /etc/warnd, /var/lib/warnd and /etc/systemd/system/warnd.service live in a temporary
  folder; `/opt/warnd/.venv/bin/warnd` is a wrapper running this checkout's warnd (the wheel
  install itself is tests/acceptance/test_installed_wheel.py's job);
- not run: `python3 -m venv`, `pip install ./warnd-*.whl` (as above), `useradd` and `chgrp warnd`
  (no system user is added to a shared test machine), `systemctl daemon-reload`;
  `install -d -o warnd -g warnd` loses its owner; `sudo -u warnd --preserve-env=WARND_CONFIG`
  runs as the test's user;
- PostgreSQL: `sudo -u postgres createuser/createdb` connect as postgres over TCP, with a
  unique role and database name; the socket URL `postgresql:///warnd` becomes TCP to that
  database as that role (the test server trusts 127.0.0.1);
- `systemctl enable --now warnd` starts `warnd serve` in the background as the unit does
  (/etc/warnd/env read as its EnvironmentFile, WARND_CONFIG set) and waits until /healthz answers; port 8080 is a free port;
- the Tencent endpoint is a closed local port (no SMS leaves the machine; sends are retried).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
DOC = CHECKOUT / "docs" / "operations.md"
PG_ADMIN = os.environ.get("WARND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    role, db = f"warnd_ops_{uuid.uuid4().hex[:8]}", f"warnd_ops_{uuid.uuid4().hex[:8]}"
    yield role, db
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')  # type: ignore[arg-type]


def script(root: Path, role: str, db: str, port: int, dead: int) -> str:
    text = "\n".join(shell_blocks(DOC.read_text(encoding="utf-8")))
    skipped = ("python3 -m venv /opt/warnd/.venv", "/opt/warnd/.venv/bin/pip install", "useradd ",
               "chgrp warnd ", "systemctl daemon-reload")
    lines = [f": skipped: {ln}" if ln.startswith(skipped) else ln for ln in text.splitlines()]
    text = "\n".join(lines) + "\n"
    serve = ("(set -a; . /etc/warnd/env; set +a; WARND_CONFIG=/etc/warnd exec /opt/warnd/.venv/bin/warnd serve)"
             " > @ROOT@/serve.log 2>&1 &\n"
             "echo $! > @ROOT@/serve.pid\n"
             "for _ in $(seq 1 300); do curl -fs -o /dev/null http://127.0.0.1:8080/healthz && break; "
             "kill -0 $(cat @ROOT@/serve.pid) || exit 1; sleep 0.1; done")
    for old, new in [
        ("sudo -u postgres createuser warnd", f"createuser -h 127.0.0.1 -U postgres {role}"),
        ("sudo -u postgres createdb -O warnd warnd", f"createdb -h 127.0.0.1 -U postgres -O {role} {db}"),
        ('url = "postgresql:///warnd"', f'url = "postgresql://{role}@127.0.0.1:5432/{db}"'),
        ('callback_token = "change-me-0123456789"',
         f'callback_token = "change-me-0123456789"\nendpoint = "127.0.0.1:{dead}"'),
        ("sudo -u warnd --preserve-env=WARND_CONFIG ", ""),
        ("install -d -o warnd -g warnd ", "install -d "),
        ("systemctl enable --now warnd", serve),  # first: its paths are substituted below
        ("/opt/warnd/.venv/bin/warnd", f"{root}/bin/warnd"),
        ("/etc/systemd/system/warnd.service", f"{root}/warnd.service"),
        ("/etc/warnd", f"{root}/etc/warnd"),
        ("/var/lib/warnd", f"{root}/var/lib/warnd"),
        ("port = 8080", f"port = {port}"),
        ("127.0.0.1:8080", f"127.0.0.1:{port}"),
    ]:
        assert old in text, f"docs/operations.md no longer says {old!r}: update this test's substitutions"
        text = text.replace(old, new)
    return "set -euo pipefail\n" + text.replace("@ROOT@", str(root))


@pytest.mark.slow
@pytest.mark.postgres
def test_operations_walkthrough_runs_as_written(tmp_path: Path, names: tuple[str, str]) -> None:
    role, db = names
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    wrapper = root / "bin" / "warnd"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={CHECKOUT} exec {sys.executable} -m warnd.cli "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    work = tmp_path / "work"  # the operator's folder: the release's deploy/ and config/ beside them
    work.mkdir()
    for folder in ("deploy", "config"):
        shutil.copytree(CHECKOUT / folder, work / folder)
    port, dead = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARND_", "INVOCATION_ID", "JOURNAL_STREAM", "PYTHONPATH"))}
    try:
        run = subprocess.run(["bash", "-c", script(root, role, db, port, dead)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}\n" + (
            (root / "serve.log").read_text(encoding="utf-8")[-3000:] if (root / "serve.log").exists() else "")
    finally:
        pid = root / "serve.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGTERM)
    out = run.stdout
    # config show named the files it loaded; the roster went in regions first; the drill was accepted.
    assert f"{root}/etc/warnd/warnd.toml" in out
    drill, _ = json.JSONDecoder().raw_decode(out[out.rindex('{\n  "'):])  # alert submit's answer
    assert drill.get("calls"), (drill, out[-2500:])
    with psycopg.connect(f"{PG_ADMIN.rpartition('/')[0]}/{db}") as conn:
        regions = conn.execute("SELECT count(*) FROM regions").fetchone()
        people = conn.execute("SELECT count(*) FROM people").fetchone()
        alert = conn.execute("SELECT status FROM alerts").fetchall()
        user = conn.execute("SELECT role FROM users WHERE name = 'zhangwei'").fetchall()
    assert regions and regions[0] > 5 and people and people[0] > 5
    assert alert == [("Exercise",)] and user == [("duty_officer",)]
    assert os.stat(root / "etc" / "warnd" / "env").st_mode & 0o777 == 0o640
