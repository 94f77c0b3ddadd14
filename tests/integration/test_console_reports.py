"""统计报表 in the console (`/console/reports`): the audit report of the storm whose answers are
known by construction (support/audit_scenario), downloaded by an auditor in every format, equals
what `warnd report` writes for the same scope on the same database — XLSX read back with
openpyxl cell by cell, the CSV files byte for byte, the JSON, the HTML page. Phones are masked.
Bad parameters are 400 problem+json naming the parameter, never a 500."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from openpyxl import load_workbook

from support.audit_scenario import build_storm, play_storm, stop_storm
from support.speaker_support import mosquitto_available
from support.users import bearer, token_for
from warnd.audit.display import TIME_FORMAT

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="apt install mosquitto")

BEIJING = timezone(timedelta(hours=8))
REPO = Path(__file__).resolve().parents[2]
REAL, DRILL, IMM, WARN, ALL = "实战", "演练", "临灾预警(1h)", "预警(3h)", "合计"
WINDOW = "from=2026-07-01T10:00&to=2026-07-01T11:00"  # Beijing time: warning A (10:00) and drill D (10:30)
# 期数与人次 of the window (tests/integration/test_audit_report.py works these out).
ISSUES = [
    [REAL, IMM, "短信", 1, 20, 9, 10, None, 21, 8, 1, 0],
    [REAL, IMM, "企业微信", 1, 3, 2, 1, None, 3, 0, 0, 0],
    [REAL, IMM, "应急广播(村村响)", 1, None, None, None, 2, None, None, None, None],
    [REAL, IMM, ALL, 1, 23, 9, 11, 2, 24, 8, 1, 0],
    [REAL, ALL, ALL, 1, 23, 9, 11, 2, 24, 8, 1, 0],
    [DRILL, WARN, "短信", 1, 1, 1, 0, None, 1, 0, 0, 0],
    [DRILL, WARN, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0],
    [DRILL, ALL, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0],
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "warnd.cli", "report", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def cli_args(query: str) -> list[str]:
    q = dict(p.split("=", 1) for p in query.split("&"))
    return ["--alert", q["alert"]] if "alert" in q else ["--from", q["from"], "--to", q["to"]]


def sheets(data: bytes | Path) -> dict[str, list[list[Any]]]:
    wb = load_workbook(io.BytesIO(data) if isinstance(data, bytes) else data)
    return {ws.title: [[c.value for c in row] for row in ws.iter_rows()] for ws in wb.worksheets}


def without_generated(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "generated_at"}


def generated_text(doc: dict[str, Any]) -> str:
    return datetime.fromisoformat(doc["generated_at"]).strftime(TIME_FORMAT)


async def test_console_downloads_equal_warnd_report(sqlite_url: str, tmp_path: Path) -> None:
    storm = await build_storm(sqlite_url, tmp_path)
    got: dict[str, dict[str, tuple[bytes, dict[str, str]]]] = {}
    try:
        await play_storm(storm)
        auditor = bearer(await token_for(storm.engine.db, "shenji", "auditor"))
        scopes = {"alert": f"alert={storm.real}", "window": WINDOW}
        for name, query in scopes.items():
            got[name] = {}
            for fmt in ("xlsx", "csv", "json", "html"):
                r = await storm.http.get(f"/console/reports/download/{fmt}?{query}", headers=auditor)
                assert r.status == 200, (fmt, await r.text())
                got[name][fmt] = (await r.read(), dict(r.headers))
            r = await storm.http.get(f"/console/reports/view?{query}", headers=auditor)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            assert "frame-ancestors 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
            assert await r.read() == got[name]["html"][0]  # the framed page is the downloaded page
        one_table = await storm.http.get(f"/console/reports/download/csv?{WINDOW}&table=issues", headers=auditor)
        assert one_table.status == 200 and one_table.headers["Content-Type"].startswith("text/csv")
        one_table_body = await one_table.read()

        # The page: the headline of `warnd report`, the report framed, the four downloads.
        r = await storm.http.get(f"/console/reports?alert={storm.real}", headers=auditor)
        page = await r.text()
        assert r.status == 200, page
        assert "实战 1期 23人次，覆盖率 75.0%（目标 95%，未达标）" in page
        assert f'src="/console/reports/view?alert={storm.real}"' in page
        for fmt in ("xlsx", "csv", "json", "html"):
            assert f'href="/console/reports/download/{fmt}?alert={storm.real}"' in page
        assert "frame-src 'self'" in r.headers["Content-Security-Policy"]
        r = await storm.http.get(f"/console/reports?{WINDOW}", headers=auditor)
        page = await r.text()
        assert r.status == 200 and "实战 1期 23人次" in page and "演练 1期 1人次" in page
        # Without `to`, the storm runs until now, and the links repeat that end (not a later "now").
        r = await storm.http.get("/console/reports?from=2026-07-01T10:00", headers=auditor)
        page = await r.text()
        now_local = storm.clock.now().astimezone(BEIJING).isoformat(timespec="seconds")
        assert r.status == 200 and f"to={quote(now_local)}" in page
        # Both kinds are offered in the picker, apart.
        assert '<optgroup label="实战">' in page and '<optgroup label="演练 / 测试">' in page

        await bad_parameters(storm, auditor)
    finally:
        await stop_storm(storm)

    for name, query in (("alert", f"alert={storm.real}"), ("window", WINDOW)):
        out = tmp_path / f"cli-{name}"
        done = cli(*cli_args(query), "--format", "xlsx,csv,json,html", "--out", str(out), "--database", sqlite_url)
        assert done.returncode == 0, done.stderr
        files = {p.suffix or "csv": p for p in out.iterdir()}
        base = files[".json"].stem

        body, headers = got[name]["json"]
        mine, theirs = json.loads(body), json.loads(files[".json"].read_text(encoding="utf-8"))
        assert without_generated(mine) == without_generated(theirs)
        assert headers["Content-Disposition"] == f'attachment; filename="{base}.json"'

        body, headers = got[name]["xlsx"]
        assert headers["Content-Disposition"] == f'attachment; filename="{base}.xlsx"'
        mine_x, theirs_x = sheets(body), sheets(files[".xlsx"])
        assert list(mine_x) == list(theirs_x)
        for title in mine_x:
            rows = mine_x[title]
            if title == "说明":  # when each was made differs, nothing else
                rows = [r for r in rows if r[0] != "生成时间"]
                theirs_x[title] = [r for r in theirs_x[title] if r[0] != "生成时间"]
            assert rows == theirs_x[title], title

        body, headers = got[name]["csv"]
        assert headers["Content-Type"] == "application/zip"
        assert headers["Content-Disposition"] == f'attachment; filename="{base}-csv.zip"'
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            zipped = {n: z.read(n) for n in z.namelist()}
        assert zipped == {f"{base}-csv/{p.name}": p.read_bytes() for p in files["csv"].iterdir()}

        body, _ = got[name]["html"]
        html = body.decode("utf-8").replace(generated_text(mine), "GENERATED")
        assert html == files[".html"].read_text(encoding="utf-8").replace(generated_text(theirs), "GENERATED")

    # The numbers themselves: the storm's known answers, from the console's XLSX and JSON.
    window_x = sheets(got["window"]["xlsx"][0])
    assert window_x["期数与人次"][1:] == ISSUES
    assert window_x["始终未确认人员"][1][5:11] == ["界亭驿村", "网格员", "吴网格", "+86 139****0013", 4, "转值班室"]
    about = {r[0]: r[1] for r in window_x["说明"]}
    assert about["电话号码"] == "已脱敏"
    doc = json.loads(got["alert"]["json"][0])
    assert doc["phones_visible"] is False
    assert [r["phone"] for r in doc["tables"]["never_confirmed"]["rows"]] == ["+86 139****0013", "+86 139****0023"]
    summary = {r["key"]: r for r in doc["tables"]["summary"]["rows"]}
    assert (summary["person_times"]["real"], summary["coverage"]["real"]) == (23, 0.75)
    assert one_table_body.decode("utf-8-sig").splitlines()[1] == "实战,临灾预警(1h),短信,1,20,9,10,,21,8,1,0"


async def bad_parameters(storm: Any, auditor: dict[str, str]) -> None:
    """Each a 400 problem+json naming the parameter, on the downloads and the framed page; the
    page itself shows the form again with the mistake (400)."""
    bad = [
        ("/console/reports/download/xlsx", "", "alert"),  # neither a warning nor a storm
        ("/console/reports/download/xlsx", "alert=abc", "alert"),
        ("/console/reports/download/xlsx", "alert=-3", "alert"),
        ("/console/reports/download/xlsx", "alert=99999999999999999999", "alert"),
        ("/console/reports/download/json", "alert=9999", "alert"),  # no such warning
        ("/console/reports/download/json", f"alert={storm.real + 1}", "alert"),  # the loudspeaker fallback
        ("/console/reports/download/csv", f"alert={storm.real}&from=2026-07-01T10:00", "alert"),
        ("/console/reports/download/csv", "from=yesterday", "from"),
        ("/console/reports/download/csv", "to=2026-07-01T11:00", "from"),
        ("/console/reports/download/csv", "from=2026-07-01T11:00&to=2026-07-01T10:00", "to"),
        ("/console/reports/download/csv", "from=2020-01-01&to=2026-07-01", "to"),
        ("/console/reports/download/csv", f"alert={storm.real}&table=nope", "table"),
        ("/console/reports/download/json", f"alert={storm.real}&table=issues", "table"),
        ("/console/reports/download/pdf", f"alert={storm.real}", "fmt"),
        ("/console/reports/view", "from=2026-13-01T10:00", "from"),
        ("/console/reports/view", "alert=%00", "alert"),
    ]
    for path, query, field in bad:
        r = await storm.http.get(f"{path}?{query}", headers=auditor)
        assert r.status == 400, (path, query, r.status, await r.text())
        assert r.headers["Content-Type"].startswith("application/problem+json"), (path, query)
        assert (await r.json())["field"] == field, (path, query, await r.json())
    for query, words in (("alert=abc", "alert must be"), ("alert=9999", "no alert 9999"),
                         ("from=2026-07-01T11:00&to=2026-07-01T10:00", "must come after")):
        r = await storm.http.get(f"/console/reports?{query}", headers=auditor)
        page = await r.text()
        assert r.status == 400 and words in page and 'role="alert"' in page and "report-frame" not in page
    # An empty form is not a mistake: the page with its pickers.
    r = await storm.http.get("/console/reports", headers=auditor)
    assert r.status == 200 and "report-frame" not in await r.text()
    assert re.search(r'<option value="\d+"', await r.text())
