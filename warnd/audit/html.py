"""The HTML report: one self-contained page from an editable Jinja2 template
(warnd/defaults/report.html.j2), charts as inline SVG (warnd.audit.charts). No script, no external
request: a Content-Security-Policy in the page forbids them, so it opens offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from warnd.audit import charts
from warnd.audit.display import TIME_FORMAT, display
from warnd.audit.model import AuditReport, Column
from warnd.config.files import package_default

NUMERIC = ("int", "rate", "minutes")


def chart_svgs(report: AuditReport) -> list[dict[str, Any]]:
    """The page's charts, in order: [{"title", "svg"}]; a chart with no data is left out."""
    w = report.words
    out: list[dict[str, Any]] = []
    timeline = report.charts.get("timeline", {})
    towns = report.table("coverage_townships").rows
    for kind in timeline.values():
        t = f"{kind['label']} · {w['chart_timeline']}"
        svg = charts.timeline(kind["steps"], report.tz, label=t, legend_total=w["persons"])
        if svg:
            out.append({"title": t, "svg": Markup(svg)})
        t = f"{kind['label']} · {w['chart_histogram']}"
        svg = charts.histogram(kind["steps"], label=t, unit=w["minutes"])
        if svg:
            out.append({"title": t, "svg": Markup(svg)})
        t = f"{kind['label']} · {w['chart_coverage']}"
        svg = charts.coverage_bars([r for r in towns if r["kind"] == kind["label"]], report.coverage_target,
                                   label=t, target_label=w["target"])
        if svg:
            out.append({"title": t, "svg": Markup(svg)})
    legend = {k: w[f"map_{k}"] for k in ("confirmed", "reached", "not_reached", "not_targeted")}
    svg = charts.village_map(report.charts.get("map", []), label=w["chart_map"], legend=legend)
    if svg:
        out.append({"title": w["chart_map"], "svg": Markup(svg)})
    return out


def context(report: AuditReport) -> dict[str, Any]:
    tables = [{
        "key": t.key, "title": t.title, "note": t.note,
        "columns": [{"label": c.label, "numeric": c.key in ("real", "drill") or c.kind in NUMERIC}
                    for c in t.columns],
        "rows": [[{"text": display(report, c, row),
                   # summary values (real/drill) line up whatever they hold
                   "numeric": c.key in ("real", "drill") or c.kind in NUMERIC}
                  for c in t.columns] for row in t.rows],
    } for t in report.tables]
    summary = {r["key"]: r for r in report.table("summary").rows}
    s = report.scope
    return {
        "title": report.title, "report": report, "tables": tables, "summary": summary,
        "charts": chart_svgs(report), "words": report.words,
        "alert_id": s.get("alert_id"),
        "window_from": report.local(s["from"]).strftime(TIME_FORMAT) if s.get("from") else None,
        "window_to": report.local(s["to"]).strftime(TIME_FORMAT) if s.get("to") else None,
        "generated_at": report.local(report.generated_at).strftime(TIME_FORMAT),
        "target_percent": f"{report.coverage_target * 100:g}%",
        "utc_offset": f"UTC{report.utc_offset_hours:+g}",
        "fmt": lambda key, kind: _fmt(report, summary, key, kind),
    }


def _fmt(report: AuditReport, summary: dict[str, dict[str, Any]], key: str, kind: str) -> str:
    row = summary.get(key)
    if row is None:
        return report.words["none"]
    return display(report, Column(kind, kind), row)


def render_html(report: AuditReport, template: Path | None = None) -> str:
    path = template or package_default("report.html.j2")
    env = Environment(loader=FileSystemLoader(str(path.parent)), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(path.name).render(**context(report))
