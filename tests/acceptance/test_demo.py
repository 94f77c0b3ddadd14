"""`warnd-dev demo` end to end, as a user runs it (`./run demo --out DIR`): the storm runs, the
summary and the audit report (HTML, XLSX) land in DIR with their paths printed, and — when
Debian's chromium and playwright are here — the 叫应 board of the imminent warning, photographed
mid-storm by the demo's duty officer, is DIR/board.png (a 1920×1080 PNG), its path printed with
the reports'. Without them the demo says so in one line and still succeeds.

Needs Mosquitto (the demo runs its own broker for the loudspeakers)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.demo.board_shot import unavailable
from support.speaker_support import mosquitto_available

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="apt install mosquitto")
REPO = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_demo_writes_its_reports_and_the_board_screenshot(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "devtools.cli", "demo", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    printed = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines if ": " in line}
    for kind in ("audit report (HTML)", "audit report (XLSX)"):
        assert Path(printed[kind]).is_file() and Path(printed[kind]).parent == out, kind
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["sms"]["duplicate_sends"] == 0

    why_not = unavailable()
    if why_not is None:
        shot = out / "board.png"
        assert printed.get("board screenshot (叫应看板)") == str(shot), done.stdout[-2000:]
        assert shot.is_file() and png_size(shot) == (1920, 1080)
        assert shot.stat().st_size > 20_000  # a page was drawn, not a blank screen
        assert summary["board_screenshot"] == str(shot)
    else:
        assert [line for line in lines if line.startswith("board screenshot")] == [
            f"board screenshot skipped: {why_not}"]
        assert not (out / "board.png").exists() and summary["board_screenshot"] is None
