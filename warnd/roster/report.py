"""What an import did, for people (Chinese text, problems grouped by reason with their row
numbers) and for machines (`warnd roster import --format json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warnd.roster.problems import Group, RowNote, Severity, group_notes
from warnd.roster.reading import KIND_ZH, Kind


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # rows


@dataclass(frozen=True)
class Rejection:
    """One rejected row with every reason found."""

    kind: str  # regions | people | speakers
    sheet: str
    row: int  # 1-based spreadsheet row
    reasons: tuple[str, ...]
    codes: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "；".join(self.reasons)


@dataclass(frozen=True)
class SheetInfo:
    sheet: str
    kind: Kind
    header_row: int  # the last header row
    data_rows: int
    ignored_columns: tuple[str, ...]
    column_warnings: tuple[str, ...] = ()  # columns that look meant to be imported but were not
    header_rows: int = 1


@dataclass
class ImportReport:
    path: Path
    sheets: list[SheetInfo] = field(default_factory=list)
    ignored_sheets: list[str] = field(default_factory=list)
    regions: Counts = field(default_factory=Counts)
    people: Counts = field(default_factory=Counts)
    speakers: Counts = field(default_factory=Counts)  # loudspeakers (device sheet)
    notes: list[RowNote] = field(default_factory=list)  # every problem, warning, skipped row
    not_in_file: int | None = None  # people in the DB absent from the file; None: no people sheet
    deactivated: int = 0

    @property
    def ok(self) -> bool:
        """No row was rejected (warnings and skipped rows allowed)."""
        return not any(n.severity is Severity.REJECTED for n in self.notes)

    @property
    def rejections(self) -> list[Rejection]:
        by_row: dict[tuple[str, int], list[RowNote]] = {}
        for n in self.notes:
            if n.severity is Severity.REJECTED:
                by_row.setdefault((n.sheet, n.row), []).append(n)
        order = {s.sheet: i for i, s in enumerate(self.sheets)}
        out = [
            Rejection(ns[0].kind, sheet, row, tuple(_one(n) for n in ns), tuple(n.problem.code for n in ns))
            for (sheet, row), ns in by_row.items()
        ]
        return sorted(out, key=lambda r: (order.get(r.sheet, 0), r.row))

    def rejected(self, kind: str | None = None) -> list[Rejection]:
        return [r for r in self.rejections if kind is None or r.kind == kind]

    def of(self, severity: Severity, kind: str | None = None) -> list[RowNote]:
        return [n for n in self.notes if n.severity is severity and (kind is None or n.kind == kind)]

    @property
    def warnings(self) -> list[RowNote]:
        return self.of(Severity.WARNING)

    @property
    def skipped(self) -> list[RowNote]:
        return self.of(Severity.SKIPPED)

    def groups(self, severity: Severity | None = None) -> list[Group]:
        notes = [n for n in self.notes if severity is None or n.severity is severity]
        return group_notes(notes, [s.sheet for s in self.sheets])


def _one(n: RowNote) -> str:
    return f"{n.problem.message}（{n.problem.detail}）" if n.problem.detail else n.problem.message


_SECTIONS = (
    (Severity.REJECTED, "未导入的行（这些行的内容都没有导入，请改正后重新导入）："),
    (Severity.WARNING, "需要注意（已导入）："),
    (Severity.NOTE, "自动处理（已导入）："),
    (Severity.SKIPPED, "不是名单数据、已跳过的行："),
)


def format_report(report: ImportReport) -> str:
    """Plain Chinese text for the terminal: what was read, the counts, the problems grouped."""
    lines = [f"导入名单：{report.path}"]
    for sh in report.sheets:
        header = (f"第{sh.header_row - 1}至{sh.header_row}行" if sh.header_rows == 2
                  else f"第{sh.header_row}行")
        line = f"  「{sh.sheet}」表：{KIND_ZH[sh.kind]}，表头在{header}，{sh.data_rows}行数据"
        if sh.ignored_columns:
            line += f"；未使用的列：{'、'.join(sh.ignored_columns)}"
        lines.append(line)
        lines += [f"    注意：{w}" for w in sh.column_warnings]
    for name in report.ignored_sheets:
        lines.append(f"  「{name}」表：没有找到行政区划、责任人或应急广播的表头，未导入")
    kinds = {sh.kind for sh in report.sheets}
    for kind, c in (("regions", report.regions), ("people", report.people), ("speakers", report.speakers)):
        if kind in kinds:
            skipped = len(report.of(Severity.SKIPPED, kind))
            warned = len({(n.sheet, n.row) for n in report.of(Severity.WARNING, kind)})
            line = f"{KIND_ZH[kind]}：新增{c.added}，更新{c.updated}，未变{c.unchanged}，未导入{c.rejected}"
            if warned:
                line += f"，需注意{warned}"
            if skipped:
                line += f"，跳过{skipped}行"
            lines.append(line)
    if report.not_in_file:
        if report.deactivated:
            lines.append(f"数据库里有、本文件里没有的责任人：{report.not_in_file}人（{report.deactivated}人已设为离岗）")
        else:
            lines.append(f"数据库里有、本文件里没有的责任人：{report.not_in_file}人（仍保持在岗）")
    with_sheet = len(report.sheets) > 1
    for severity, title in _SECTIONS:
        groups = report.groups(severity)
        if groups:
            lines.append(title)
            lines += [f"  {g.text(with_sheet)}" for g in groups]
    if report.ok:
        lines.append("没有未导入的行")
    return "\n".join(lines)


def report_json(report: ImportReport) -> dict[str, Any]:
    """The same report for machines: counts, grouped problems, and every row's note."""
    def counts(c: Counts) -> dict[str, int]:
        return {"added": c.added, "updated": c.updated, "unchanged": c.unchanged, "rejected": c.rejected}

    return {
        "file": str(report.path),
        "ok": report.ok,
        "sheets": [
            {"sheet": s.sheet, "kind": s.kind, "header_row": s.header_row, "header_rows": s.header_rows,
             "data_rows": s.data_rows, "ignored_columns": list(s.ignored_columns),
             "column_warnings": list(s.column_warnings)}
            for s in report.sheets
        ],
        "ignored_sheets": report.ignored_sheets,
        "counts": {k: counts(getattr(report, k)) for k in ("regions", "people", "speakers")},
        "not_in_file": report.not_in_file,
        "deactivated": report.deactivated,
        "groups": [
            {"severity": g.severity.value, "kind": g.kind, "sheet": g.sheet, "code": g.code,
             "message": g.message, "rows": list(g.rows), "details": list(g.details), "text": g.text()}
            for g in report.groups()
        ],
        "rows": [
            {"severity": n.severity.value, "kind": n.kind, "sheet": n.sheet, "row": n.row,
             "code": n.problem.code, "message": n.problem.message, "detail": n.problem.detail}
            for n in sorted(report.notes, key=lambda n: (n.sheet, n.row))
        ],
    }
