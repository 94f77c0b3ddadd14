"""`warnd roster import FILE`: regions, people and loudspeakers from a county's sheet.

Each row is all or nothing: a row with any problem is rejected and reported with its
spreadsheet row number; the good rows are applied. Rows that are not data (合计, 填表说明)
are skipped and reported as skipped. Everything applied goes in one transaction, regions
before people. Existing rows are loaded once and compared in memory, so a 5,000-person
sheet costs a constant number of statements.

Optional columns: a column absent from the sheet leaves the stored value alone; an empty cell
in a present column clears it. The exception is 在岗: a person listed without that column is
on duty (active).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.config import load_roles
from warnd.core.domain import Level
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import Event, Person, PersonExtraRole, Region
from warnd.roster.people import PeoplePlanner, PersonRow, plan_people
from warnd.roster.problems import Problem, RowNote, Severity, problem
from warnd.roster.reading import (
    HeaderAliases,
    ReadResult,
    RosterError,
    Table,
    load_header_aliases,
    read_roster_file,
)
from warnd.roster.regions import Known, PlaceIndex, plan_regions, where
from warnd.roster.report import Counts, ImportReport, SheetInfo

NO_REGIONS = (
    "数据库里还没有任何行政区划，名单里的人和喇叭无法对应到乡镇和村。"
    "请先导入行政区划表（需要“行政区划代码”和“名称”两列，样例见 config/regions-sample.csv），"
    "再导入本名单；也可以把行政区划表和责任人表放在同一个 Excel 文件的两个工作表里一起导入。"
)


def _assign(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for attr, value in values.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed = True
    return changed


class _Notes:
    def __init__(self) -> None:
        self.items: list[RowNote] = []

    def add(self, severity: Severity, kind: str, sheet: str, row: int, problems: Iterable[Problem]) -> None:
        self.items += [RowNote(severity, kind, sheet, row, p) for p in problems]

    def rejected_rows(self, kind: str) -> int:
        return len({(n.sheet, n.row) for n in self.items if n.kind == kind and n.severity is Severity.REJECTED})


async def import_roster(
    db: Database,
    path: Path,
    *,
    roles: Roles | None = None,
    headers: HeaderAliases | None = None,
    now: datetime,
    deactivate_missing: bool = False,
) -> ImportReport:
    """Import regions, people and loudspeakers from a CSV or XLSX file. Raises RosterError
    (a Chinese message) when the file as a whole is unusable; row problems are reported."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    roles = roles or load_roles()
    headers = headers or load_header_aliases()
    # openpyxl and csv are blocking; a big workbook must not stall the daemon's event loop.
    read: ReadResult = await asyncio.to_thread(read_roster_file, path, headers)
    report = ImportReport(path=path, ignored_sheets=read.ignored_sheets)
    report.sheets = [
        SheetInfo(t.sheet, t.kind, t.header_row, len(t.rows), tuple(t.ignored_columns),
                  tuple(n.message for n in t.column_notes), t.header_rows)
        for t in read.tables
    ]
    notes = _Notes()
    for t in read.tables:
        for sk in t.skipped:
            notes.add(Severity.SKIPPED, t.kind, t.sheet, sk.row, [problem(sk.code, sk.text)])
    region_tables = [t for t in read.tables if t.kind == "regions"]
    people_tables = [t for t in read.tables if t.kind == "people"]
    speaker_tables = [t for t in read.tables if t.kind == "speakers"]

    async with db.session() as s, s.begin():
        existing_regions = {r.code: r for r in (await s.exec(select(Region))).all()}
        if not existing_regions and not region_tables:
            raise RosterError(f"{path}：{NO_REGIONS}")

        accepted_regions, rejected_regions, region_rejections = plan_regions(
            region_tables, existing_regions, headers)
        for sheet, row, reasons in region_rejections:
            notes.add(Severity.REJECTED, "regions", sheet, row, reasons)
        _apply_regions(s, accepted_regions, existing_regions, report.regions, now)
        await s.flush()  # regions first: people refer to them

        known = {c: Known(r.name, Level(r.level)) for c, r in existing_regions.items()}
        known.update({c: Known(r.name, r.level) for c, r in accepted_regions.items()})
        if people_tables:
            await _import_people(s, people_tables, known, rejected_regions, roles, headers, notes,
                                 report, now, deactivate_missing)
        if speaker_tables:
            await _import_speakers(s, speaker_tables, known, headers, notes, report, now)

        report.regions.rejected = notes.rejected_rows("regions")
        report.people.rejected = notes.rejected_rows("people")
        report.speakers.rejected = notes.rejected_rows("speakers")
        order = {t.sheet: i for i, t in enumerate(read.tables)}
        report.notes = sorted(notes.items, key=lambda n: (order.get(n.sheet, 0), n.row))
        s.add(Event(at=now, kind="roster_imported", data=_event_data(report)))
    return report


def _apply_regions(s: AsyncSession, accepted: dict[str, Any], existing: dict[str, Region],
                   counts: Counts, now: datetime) -> None:
    for code, row in accepted.items():
        values: dict[str, Any] = {"name": row.name, "level": row.level.value, "parent_code": row.parent}
        if row.set_geometry:
            values["geometry_wkt"] = row.geometry
        current = existing.get(code)
        if current is None:
            s.add(Region(code=code, updated_at=now, **values))
            counts.added += 1
        elif _assign(current, values):
            current.updated_at = now
            counts.updated += 1
        else:
            counts.unchanged += 1


async def _import_people(s: AsyncSession, tables: list[Table], known: dict[str, Known],
                         rejected_regions: dict[str, tuple[str, int]], roles: Roles, headers: HeaderAliases,
                         notes: _Notes, report: ImportReport, now: datetime, deactivate_missing: bool) -> None:
    existing = {p.key: p for p in (await s.exec(select(Person))).all()}
    extra_of: dict[int, list[str]] = {}
    for er in (await s.exec(select(PersonExtraRole).order_by(
            col(PersonExtraRole.person_id), col(PersonExtraRole.position)))).all():
        extra_of.setdefault(er.person_id, []).append(er.role)

    planner = PeoplePlanner(headers, roles, known, rejected_regions)
    accepted, file_keys, rejected, people_notes = plan_people(tables, existing, planner)
    for sheet, row, reasons in rejected:
        notes.add(Severity.REJECTED, "people", sheet, row, reasons)
    for n in people_notes:
        notes.add(n.severity, "people", n.sheet, n.row, [n.problem])

    new_people: list[dict[str, Any]] = []
    roles_changed: dict[int, list[str]] = {}  # person id → extra roles to store
    new_extra: dict[str, list[str]] = {}  # key of a new person → extra roles
    for key, prow in accepted.items():
        current = existing.get(key)
        values = _person_values(prow)
        extra = prow.roles[1:]
        if current is None:
            new_people.append({"deputy_key": None, "wecom_userid": None, "phone2": None,
                               **values, "key": key, "updated_at": now})
            if extra:
                new_extra[key] = extra
            report.people.added += 1
            continue
        changed = _assign(current, values)
        if current.id is not None and extra_of.get(current.id, []) != extra:
            roles_changed[current.id] = extra
            changed = True
        if changed:
            current.updated_at = now
            report.people.updated += 1
        else:
            report.people.unchanged += 1
    await s.flush()
    conn = await s.connection()
    if new_people:
        # Core executemany: the ORM would insert rows one by one on SQLite to fetch each new
        # id; only people with extra roles need theirs, fetched in one SELECT below.
        await conn.execute(insert(Person), new_people)
    if roles_changed:
        await conn.execute(delete(PersonExtraRole).where(col(PersonExtraRole.person_id).in_(list(roles_changed))))
    extra_rows = [{"person_id": pid, "role": r, "position": i + 1}
                  for pid, extra in roles_changed.items() for i, r in enumerate(extra)]
    if new_extra:
        ids = dict((await s.exec(select(Person.key, Person.id).where(col(Person.key).in_(list(new_extra))))).all())
        extra_rows += [{"person_id": ids[k], "role": r, "position": i + 1}
                       for k, extra in new_extra.items() for i, r in enumerate(extra)]
    if extra_rows:
        await conn.execute(insert(PersonExtraRole), extra_rows)

    missing = [p for k, p in existing.items() if k not in file_keys]
    report.not_in_file = len(missing)
    if deactivate_missing:
        for p in missing:
            if p.active:
                p.active = False
                p.updated_at = now
                report.deactivated += 1


def _person_values(prow: PersonRow) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": prow.name, "phone": prow.phone, "role": prow.roles[0],
        "region_code": prow.region_code, "active": prow.active,
    }
    if prow.set_phone2:
        values["phone2"] = prow.phone2
    if prow.set_deputy:
        values["deputy_key"] = prow.deputy_key
    if prow.set_wecom:
        values["wecom_userid"] = prow.wecom
    return values


async def _import_speakers(s: AsyncSession, tables: list[Table], known: dict[str, Known], headers: HeaderAliases,
                           notes: _Notes, report: ImportReport, now: datetime) -> None:
    from warnd.roster.speakers import SpeakerRow, apply_speakers, parse_speaker

    levels = {c: k.level for c, k in known.items()}
    places: list[PlaceIndex] = []

    def find_place(text: str) -> set[str]:
        if not places:
            places.append(PlaceIndex(known))
        return places[0].find(text)

    def label(fld: str) -> str:
        return headers.label("speakers", fld)

    accepted: dict[str, SpeakerRow] = {}
    for t in tables:
        for number, cells in t.rows:
            row, reasons = parse_speaker(lambda f, c=cells, tb=t: tb.cell(c, f), t.has, t.sheet, number,  # type: ignore[misc]
                                         levels, find_place, label)
            if row is not None and (prev := accepted.get(row.device_id)) is not None:
                reasons = [problem("duplicate_device", f"{row.device_id}，同{where(prev.sheet, prev.row, t.sheet)}",
                                   device_id=label("device_id"))]
                row = None
            if row is None:
                notes.add(Severity.REJECTED, "speakers", t.sheet, number, reasons)
            else:
                accepted[row.device_id] = row
    added, updated, unchanged = await apply_speakers(s, list(accepted.values()), now)
    report.speakers.added, report.speakers.updated, report.speakers.unchanged = added, updated, unchanged


def _event_data(report: ImportReport) -> dict[str, Any]:
    def counts(c: Counts) -> dict[str, int]:
        return {"added": c.added, "updated": c.updated, "unchanged": c.unchanged, "rejected": c.rejected}

    return {
        "file": report.path.name,
        "regions": counts(report.regions),
        "people": counts(report.people),
        "speakers": counts(report.speakers),
        "warnings": len({(n.sheet, n.row) for n in report.warnings}),
        "skipped": len(report.skipped),
        "not_in_file": report.not_in_file,
        "deactivated": report.deactivated,
    }
