"""How a report value reads to a person (local time, 96.7%, 是/否, — for nothing): shared by
every format (XLSX, CSV, the HTML page)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from warnd.audit.model import BOOL, MINUTES, RATE, TIME, AuditReport, Column

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def cell_kind(column: Column, row: dict[str, Any]) -> str:
    """A column's kind, except in the summary table where each row says what it holds."""
    return str(row.get("_kind", column.kind)) if column.key in ("real", "drill") else column.kind


def display(report: AuditReport, column: Column, row: dict[str, Any]) -> str:
    """The value as a person reads it: local time, 96.7%, 是/否, — for nothing."""
    v = row.get(column.key)
    if v is None:
        return report.words.get("none", "—")
    kind = cell_kind(column, row)
    if kind == RATE:
        return f"{float(v) * 100:.1f}%"
    if kind == MINUTES:
        return f"{float(v):.1f}"
    if kind == BOOL or isinstance(v, bool):
        return report.words["yes"] if v else report.words["no"]
    if kind == TIME and isinstance(v, datetime):
        return report.local(v).strftime(TIME_FORMAT)
    return str(v)
