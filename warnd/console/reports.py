"""统计报表 in the console: the audit report of one warning or of a storm, the same report
`warnd report` writes (warnd.audit builds it; nothing is counted here).

- `GET /console/reports` — pick one warning (`?alert=ID`) or a storm (`?from=T1&to=T2`, Beijing
  time, `to` defaults to now); with a scope the page shows the headline line of
  `warnd report`, the HTML report in a frame, and the download links.
- `GET /console/reports/view` — the HTML report itself (self-contained, no script), the page
  the frame shows; its own Content-Security-Policy lets only this site frame it.
- `GET /console/reports/download/{fmt}` — `xlsx`, `csv` (a ZIP of one CSV per table, or one
  table with `&table=KEY`), `json` or `html`, as an attachment with the CLI's file name.

Each report counts real warnings and drills apart (two columns, separate rows). Phone numbers
are masked, as in `warnd report` without `--show-phones`. Bad parameters are 400 problem+json
(on the page: the form again, with the mistake named, status 400).
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import TemplateError
from multidict import MultiMapping

from warnd.api.auth import Rule
from warnd.api.problems import problem
from warnd.app import App
from warnd.audit import (
    AuditReport,
    ReportOptions,
    Scope,
    ScopeError,
    make_report,
    options_from_settings,
)
from warnd.audit.cli import headline, parse_time
from warnd.audit.export import FORMATS, base_name, write_report
from warnd.audit.html import render_html
from warnd.audit.labels import LabelsError
from warnd.config import ConfigError
from warnd.console.render import render
from warnd.views.alerts import AlertFilter, list_alerts

MAX_WINDOW = timedelta(days=366)  # a storm, a season: not the whole history in one request
MAX_ALERT_ID = 2**31 - 1
PICK_LIMIT = 200  # warnings offered in the picker (newest first)
CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "application/zip",
    "json": "application/json",
    "html": "text/html",
}
# The report page: inline CSS and SVG only (as its own <meta> CSP says), framed by this site only.
VIEW_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'")


class QueryError(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


@dataclass(frozen=True)
class Asked:
    """What the query asks for, as typed (to put back in the form) and as a Scope."""

    scope: Scope | None
    alert: str = ""
    start: str = ""
    end: str = ""  # as typed; "" means now
    end_used: str = ""  # the end the report was cut at (links repeat it, not "now" again)

    def query(self) -> str:
        if self.scope is None:
            return ""
        if self.scope.alert_id is not None:
            return urlencode({"alert": self.scope.alert_id})
        return urlencode({"from": self.start, "to": self.end or self.end_used})


def parse_scope(query: MultiMapping[str], now: datetime, utc_offset_hours: float = 8.0) -> Asked:
    """`alert=ID` or `from=T1[&to=T2]` (local time unless an offset is given); neither: no scope.
    Raises QueryError naming the parameter that is wrong."""
    alert = query.get("alert", "").strip()
    start = query.get("from", "").strip()
    end = query.get("to", "").strip()
    if alert and (start or end):
        raise QueryError("alert", "give either alert (one warning) or from/to (a storm), not both")
    if alert:
        if not alert.isascii() or not alert.isdigit() or not 0 < int(alert) <= MAX_ALERT_ID:
            raise QueryError("alert", f"alert must be a warning's id (a positive number), got {alert[:40]!r}")
        return Asked(Scope(alert_id=int(alert)), alert=alert)
    if end and not start:
        raise QueryError("from", "a storm needs its start (from) as well as its end (to)")
    if not start:
        return Asked(None)
    times = {}
    for name, text in (("from", start), ("to", end)):
        if not text:
            continue
        try:
            times[name] = parse_time(text[:64], utc_offset_hours)
        except ValueError:
            raise QueryError(name, f"{name} must be a time like 2026-07-01T10:00 (Beijing), got {text[:40]!r}") from None
    t1, t2 = times["from"], times.get("to", now)
    if t2 <= t1:
        raise QueryError("to", "the storm's end (to) must come after its start (from)")
    if t2 - t1 > MAX_WINDOW:
        raise QueryError("to", f"a storm window is at most {MAX_WINDOW.days} days; report longer periods in parts")
    local = t2.astimezone(timezone(timedelta(hours=utc_offset_hours)))
    return Asked(Scope(start=t1, end=t2), start=start, end=end, end_used=local.isoformat(timespec="seconds"))


def routes(engine: App) -> list[tuple[web.RouteDef, Rule]]:
    role_labels = {code: r.label for code, r in engine.roles.by_code.items()}

    def options() -> ReportOptions:
        return options_from_settings(engine.settings)  # phones masked: may_see_phones=False

    async def report_of(scope: Scope) -> AuditReport:
        """Raises ScopeError (the scope names nothing reportable), LabelsError, ConfigError."""
        return await make_report(engine.db, scope, now=engine.clock.now(), role_labels=role_labels,
                                 options=options())

    async def asked_report(request: web.Request) -> AuditReport | web.Response:
        """The report the query asks for, or the problem+json that says why not."""
        try:
            asked = parse_scope(request.query, engine.clock.now(), _offset(engine))
        except QueryError as e:
            return problem(400, "Bad request", e.detail, field=e.field)
        if asked.scope is None:
            return problem(400, "Bad request", "give alert=ID (one warning) or from=T1&to=T2 (a storm, Beijing time)",
                           field="alert")
        try:
            return await report_of(asked.scope)
        except ScopeError as e:
            return problem(400, "Bad request", str(e), field="alert" if asked.scope.alert_id else "from")
        except (LabelsError, ConfigError) as e:
            return _unavailable(e)

    async def page(request: web.Request) -> web.StreamResponse:
        now = engine.clock.now()
        error, report, asked = "", None, Asked(None)
        try:
            asked = parse_scope(request.query, now, _offset(engine))
        except QueryError as e:
            error = e.detail
            asked = Asked(None, alert=request.query.get("alert", "")[:40], start=request.query.get("from", "")[:40],
                          end=request.query.get("to", "")[:40])
        if asked.scope is not None:
            try:
                report = await report_of(asked.scope)
            except ScopeError as e:
                error = str(e)
            except (LabelsError, ConfigError) as e:
                error = f"报表配置有误，请管理员检查：{e}"
        picks = await list_alerts(engine.db, AlertFilter(kind="all", per_page=PICK_LIMIT), now, engine.vocab.label)
        choices = [a for a in picks["alerts"] if not a["fallback_for"]]
        q = asked.query() if report is not None else ""
        resp = render(request, "reports.html", title="统计报表", asked=asked, error=error, report=report,
                      headline=headline(report) if report is not None else "",
                      real=[a for a in choices if a["real"]], drills=[a for a in choices if not a["real"]],
                      view_url=f"/console/reports/view?{q}",
                      downloads=[(fmt, f"/console/reports/download/{fmt}?{q}") for fmt in ("xlsx", "csv", "json", "html")],
                      status=400 if error else 200)
        # The report is framed from this site (its page carries its own CSP).
        resp.headers["Content-Security-Policy"] += "; frame-src 'self'"
        return resp

    async def view(request: web.Request) -> web.StreamResponse:
        got = await asked_report(request)
        if isinstance(got, web.Response):
            return got
        try:
            body = await asyncio.to_thread(render_html, got, options().html_template)
        except TemplateError as e:
            return _unavailable(e)
        resp = web.Response(text=body, content_type="text/html", charset="utf-8")
        _report_headers(resp)
        return resp

    async def download(request: web.Request) -> web.StreamResponse:
        fmt = request.match_info["fmt"]
        if fmt not in FORMATS:
            return problem(400, "Bad request", f"formats are {', '.join(FORMATS)}", field="fmt")
        table = request.query.get("table", "").strip()
        if table and fmt != "csv":
            return problem(400, "Bad request", "table= picks one CSV table; it goes with csv only", field="table")
        got = await asked_report(request)
        if isinstance(got, web.Response):
            return got
        if table and table not in {t.key for t in got.tables}:
            return problem(400, "Bad request", f"no table {table[:40]!r}: tables are "
                           f"{', '.join(t.key for t in got.tables)}", field="table")
        try:
            body, name = await asyncio.to_thread(_file, got, fmt, table, options().html_template)
        except (TemplateError, OSError) as e:
            return _unavailable(e)
        ctype = "text/csv" if table else CONTENT_TYPES[fmt]
        resp = web.Response(body=body, content_type=ctype, charset="utf-8" if ctype.startswith("text/") else None)
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        _report_headers(resp)
        return resp

    return [
        (web.get("/console/reports", page, name="console_reports"), "reports.read"),
        (web.get("/console/reports/view", view, name="console_report_view"), "reports.read"),
        (web.get("/console/reports/download/{fmt}", download, name="console_report_download"), "reports.read"),
    ]


def _offset(engine: App) -> float:
    return float(engine.settings.report.utc_offset_hours)


def _file(report: AuditReport, fmt: str, table: str, html_template: Path | None) -> tuple[bytes, str]:
    """The file `warnd report --format FMT` writes, as bytes and its name (CSV: zipped, or one table)."""
    with tempfile.TemporaryDirectory(prefix="warnd-report-") as tmp:
        path = write_report(report, Path(tmp), [fmt], html_template)[fmt]
        if fmt != "csv":
            return path.read_bytes(), path.name
        if table:
            return (path / f"{table}.csv").read_bytes(), f"{base_name(report)}-{table}.csv"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(path.iterdir()):
                z.write(f, f"{path.name}/{f.name}")
        return buf.getvalue(), f"{path.name}.zip"


def _report_headers(resp: web.StreamResponse) -> None:
    h = resp.headers
    h["Content-Security-Policy"] = VIEW_CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "SAMEORIGIN"
    h["Referrer-Policy"] = "same-origin"
    h["Cache-Control"] = "no-store"


def _unavailable(e: Exception) -> web.Response:
    """The operator's report texts or template are wrong: not the asker's mistake."""
    return problem(503, "Report unavailable", f"the report settings need fixing: {type(e).__name__}: {e}")
