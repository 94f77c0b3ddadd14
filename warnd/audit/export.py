"""Writing a report: XLSX (one sheet per table), CSV (one file per table, UTF-8 with BOM so
Excel reads the Chinese), JSON, and the self-contained HTML page (warnd.audit.html)."""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from warnd.audit.display import TIME_FORMAT, cell_kind, display
from warnd.audit.model import BOOL, INT, MINUTES, RATE, TIME, AuditReport, Column, Table

SHEET_BAD = re.compile(r"[\[\]:*?/\\]")

FORMATS = ("html", "xlsx", "csv", "json")
def base_name(report: AuditReport) -> str:
    s = report.scope
    if s.get("alert_id") is not None:
        return f"warnd-report-alert-{s['alert_id']}"
    fmt = "%Y%m%dT%H%M"
    return f"warnd-report-{report.local(s['from']).strftime(fmt)}-{report.local(s['to']).strftime(fmt)}"


# --- CSV -----------------------------------------------------------------------------------------


def _csv_value(report: AuditReport, column: Column, row: dict[str, Any]) -> Any:
    v = row.get(column.key)
    if v is None:
        return ""
    if cell_kind(column, row) == INT and not isinstance(v, bool):
        return v
    return display(report, column, row)


def write_csv(report: AuditReport, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for t in report.tables:
        path = folder / f"{t.key}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([c.label for c in t.columns])
            for row in t.rows:
                w.writerow([_csv_value(report, c, row) for c in t.columns])
        out.append(path)
    return out


# --- JSON ----------------------------------------------------------------------------------------


def write_json(report: AuditReport, path: Path) -> Path:
    path.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


# --- XLSX ----------------------------------------------------------------------------------------


def text_width(s: str) -> int:
    """Display width: a Chinese character takes two columns."""
    if s.isascii():
        return len(s)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in s)


def sheet_title(title: str, taken: set[str]) -> str:
    base = SHEET_BAD.sub("_", title)[:31] or "Sheet"
    name, n = base, 2
    while name in taken:
        suffix = f"({n})"
        name, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def _xlsx_cell(report: AuditReport, column: Column, row: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, number format) for openpyxl: numbers stay numbers, times are local."""
    v = row.get(column.key)
    if v is None:
        return None, None
    kind = cell_kind(column, row)
    if kind == BOOL or isinstance(v, bool):
        return (report.words["yes"] if v else report.words["no"]), None
    if kind == RATE:
        return float(v), "0.0%"
    if kind == MINUTES:
        return float(v), "0.0"
    if kind == TIME and isinstance(v, datetime):
        return report.local(v).replace(tzinfo=None), "yyyy-mm-dd hh:mm:ss"
    return v, None


def write_xlsx(report: AuditReport, path: Path) -> Path:
    """Streamed (openpyxl write-only): a county's storm is thousands of rows."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    taken: set[str] = set()
    head_font, head_fill = Font(bold=True), PatternFill("solid", fgColor="DDE6F0")
    head_align = Alignment(vertical="center")
    for t in report.tables:
        ws = wb.create_sheet(sheet_title(t.title, taken))
        cells = [[_xlsx_cell(report, c, row) for c in t.columns] for row in t.rows]
        widths = [text_width(c.label) for c in t.columns]
        for row, values in zip(t.rows, cells, strict=True):
            for i, c in enumerate(t.columns):
                if values[i][0] is not None:
                    widths[i] = max(widths[i], text_width(display(report, c, row)))
        for i, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = min(max(w + 2, 6), 60)
        ws.freeze_panes = "A2"
        if t.rows:
            ws.auto_filter.ref = f"A1:{get_column_letter(len(t.columns))}{len(t.rows) + 1}"
        header = []
        for c in t.columns:
            cell = WriteOnlyCell(ws, value=c.label)
            cell.font, cell.fill, cell.alignment = head_font, head_fill, head_align
            header.append(cell)
        ws.append(header)
        for values in cells:
            out: list[Any] = []
            for value, fmt in values:
                if fmt is None:
                    out.append(value)
                else:
                    cell = WriteOnlyCell(ws, value=value)
                    cell.number_format = fmt
                    out.append(cell)
            ws.append(out)
    _about_sheet(wb, report, taken)
    wb.save(path)
    return path


def _about_sheet(wb: Any, report: AuditReport, taken: set[str]) -> None:
    ws = wb.create_sheet(sheet_title("说明", taken))
    s = report.scope
    scope = (f"预警 {s['alert_id']}" if s.get("alert_id") is not None else
             f"{report.local(s['from']).strftime(TIME_FORMAT)} 至 {report.local(s['to']).strftime(TIME_FORMAT)} 受理的预警")
    lines: list[tuple[str, str]] = [
        ("报告", report.title), ("范围", scope),
        ("生成时间", report.local(report.generated_at).strftime(TIME_FORMAT)),
        ("覆盖率目标", f"{report.coverage_target * 100:g}%"),
        ("电话号码", "完整显示" if report.may_see_phones else "已脱敏"),
    ]
    lines += [(t.title, t.note) for t in report.tables if t.note]
    ws.column_dimensions["A"].width = 16
    ws.column_dimensions["B"].width = 100
    for k, v in lines:
        ws.append([k, v])


# --- everything ----------------------------------------------------------------------------------


def write_report(report: AuditReport, folder: Path, formats: Iterable[str] = FORMATS,
                 html_template: Path | None = None) -> dict[str, Path]:
    """Write the report in each format into `folder`. Returns format → path (the CSV folder)."""
    from warnd.audit.html import render_html

    folder.mkdir(parents=True, exist_ok=True)
    base = base_name(report)
    out: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "xlsx":
            out[fmt] = write_xlsx(report, folder / f"{base}.xlsx")
        elif fmt == "csv":
            write_csv(report, folder / f"{base}-csv")
            out[fmt] = folder / f"{base}-csv"
        elif fmt == "json":
            out[fmt] = write_json(report, folder / f"{base}.json")
        elif fmt == "html":
            path = folder / f"{base}.html"
            path.write_text(render_html(report, html_template), encoding="utf-8")
            out[fmt] = path
        else:
            raise ValueError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    return out


def table_rows(report: AuditReport, table: Table) -> list[list[str]]:
    """A table as display strings (the HTML page, the console)."""
    return [[display(report, c, row) for c in table.columns] for row in table.rows]
