"""The report as one structured object: the CLI writes it as XLSX/CSV/JSON/HTML, and an HTTP
handler (the console) can render the same object.

Values in rows are raw: ints, floats (rates 0..1, minutes), aware UTC datetimes, text or None.
Formatting (local time, percent, 是/否) belongs to the renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# Column kinds: how a renderer shows the value.
TEXT, INT, RATE, MINUTES, TIME, BOOL = "text", "int", "rate", "minutes", "time", "bool"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = TEXT


@dataclass
class Table:
    key: str  # stable English name: CSV file name, JSON key
    title: str  # Chinese: sheet name, heading
    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str = ""

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)


@dataclass
class AuditReport:
    title: str
    scope: dict[str, Any]  # {"alert_id": …} or {"from": …, "to": …}
    generated_at: datetime
    coverage_target: float
    utc_offset_hours: float
    may_see_phones: bool
    tables: list[Table]
    charts: dict[str, Any] = field(default_factory=dict)  # data the HTML charts are drawn from
    words: dict[str, str] = field(default_factory=dict)  # 是/否/— …, for renderers

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)

    @property
    def tz(self) -> timezone:
        return timezone(timedelta(hours=self.utc_offset_hours))

    def local(self, t: datetime) -> datetime:
        return t.astimezone(self.tz)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 in local time (with offset)."""

        def value(v: Any) -> Any:
            if isinstance(v, datetime):
                return self.local(v).isoformat()
            if isinstance(v, dict):
                return {k: value(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [value(x) for x in v]
            return v

        return {
            "title": self.title, "scope": value(self.scope), "generated_at": value(self.generated_at),
            "coverage_target": self.coverage_target, "utc_offset_hours": self.utc_offset_hours,
            "phones_visible": self.may_see_phones,
            "tables": {t.key: {"title": t.title, "note": t.note,
                               "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in t.columns],
                               "rows": [value(r) for r in t.rows]} for t in self.tables},
            "charts": value(self.charts),
        }
