"""`warnd roster import FILE`: regions and people from a duty room's sheet into the database.

Each row is all or nothing: a row with any problem is rejected and reported with its
spreadsheet row number; the good rows are applied. Everything applied goes in one
transaction, regions before people. Existing rows are loaded once and compared in memory,
so a 5,000-person sheet costs a constant number of SELECTs.

Optional columns: a column absent from the sheet leaves the stored value alone; an empty cell
in a present column clears it. The exception is 在岗: a person listed without that column is
on duty (active).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import select

from warnd.config import load_roles
from warnd.core.domain import Level
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import Event, Person, Region
from warnd.roster.cells import (
    CellError,
    level_of,
    normalise_code,
    normalise_phone,
    parent_of,
    parse_active,
    parse_level,
    parse_point,
    parse_polygon,
)
from warnd.roster.reading import (
    HeaderAliases,
    Kind,
    ReadResult,
    Table,
    load_header_aliases,
    read_roster_file,
)

KEY_MAX = 64  # people.key column width
_WECOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}")


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Rejection:
    kind: Kind
    sheet: str
    row: int  # 1-based spreadsheet row
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class SheetInfo:
    sheet: str
    kind: Kind
    header_row: int
    data_rows: int
    ignored_columns: tuple[str, ...]


@dataclass
class ImportReport:
    path: Path
    sheets: list[SheetInfo] = field(default_factory=list)
    ignored_sheets: list[str] = field(default_factory=list)
    regions: Counts = field(default_factory=Counts)
    people: Counts = field(default_factory=Counts)
    speakers: Counts = field(default_factory=Counts)  # loudspeakers (device sheet)
    rejections: list[Rejection] = field(default_factory=list)
    not_in_file: int | None = None  # people in the DB absent from the file; None: no people sheet
    deactivated: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejections

    def rejected(self, kind: Kind | None = None) -> list[Rejection]:
        return [r for r in self.rejections if kind is None or r.kind == kind]


# --- parsed rows -----------------------------------------------------------------------------


@dataclass
class _RegionRow:
    sheet: str
    row: int
    code: str
    name: str
    level: Level
    parent: str | None
    geometry: str | None
    set_geometry: bool  # a point or WKT column is present


@dataclass
class _PersonRow:
    sheet: str
    row: int
    key: str
    name: str
    phone: str
    role: str
    region_code: str
    active: bool
    deputy_text: str
    set_deputy: bool
    wecom: str | None
    set_wecom: bool
    deputy_key: str | None = None


@dataclass(frozen=True)
class _Known:
    name: str
    level: Level


def _where(sheet: str, row: int, here: str) -> str:
    return f"row {row}" if sheet == here else f"sheet {sheet!r} row {row}"


def _squash(text: str) -> str:
    return re.sub(r"[\s/／\\]+", "", text)


class _Rejections:
    def __init__(self) -> None:
        self.items: dict[tuple[str, int], Rejection] = {}

    def add(self, kind: Kind, sheet: str, row: int, reasons: Iterable[str]) -> None:
        prev = self.items.get((sheet, row))
        before = prev.reasons if prev else ()
        self.items[(sheet, row)] = Rejection(kind, sheet, row, before + tuple(reasons))

    def count(self, kind: Kind) -> int:
        return sum(1 for r in self.items.values() if r.kind == kind)


# --- regions ---------------------------------------------------------------------------------


def _parse_region(
    t: Table, number: int, cells: list[str], h: HeaderAliases
) -> tuple[_RegionRow | None, list[str]]:
    def lbl(fld: str) -> str:
        return h.label("regions", fld)

    reasons: list[str] = []
    code: str | None = None
    code_text = t.cell(cells, "code")
    if not code_text:
        reasons.append(f"missing {lbl('code')}")
    else:
        try:
            code = normalise_code(code_text)
        except CellError as e:
            reasons.append(str(e))
    name = t.cell(cells, "name")
    if not name:
        reasons.append(f"missing {lbl('name')}")
    if code is not None:
        level = level_of(code)
        if level_text := t.cell(cells, "level"):
            try:
                given = parse_level(level_text)
                if given != level:
                    reasons.append(
                        f"{lbl('level')} {level_text!r} does not match the code: {code} has "
                        f"{len(code)} digits, which is a {level.value}"
                    )
            except CellError as e:
                reasons.append(str(e))
        if parent_text := t.cell(cells, "parent"):
            try:
                parent = normalise_code(parent_text)
                if parent != parent_of(code):
                    expected = parent_of(code) or "none (a county is the top level here)"
                    reasons.append(
                        f"{lbl('parent')} {parent} does not match the code structure: the parent of {code} is {expected}"
                    )
            except CellError as e:
                reasons.append(f"{lbl('parent')}: {e}")
    geometry: str | None = None
    try:
        point = parse_point(t.cell(cells, "lon"), t.cell(cells, "lat"))
    except CellError as e:
        point = None
        reasons.append(str(e))
    try:
        polygon = parse_polygon(t.cell(cells, "wkt"))
    except CellError as e:
        polygon = None
        reasons.append(str(e))
    geometry = polygon or point  # one geometry column: the boundary, when given, is the better one
    if code is None:
        return None, reasons
    row = _RegionRow(
        sheet=t.sheet,
        row=number,
        code=code,
        name=name,
        level=level_of(code),
        parent=parent_of(code),
        geometry=geometry,
        set_geometry=t.has("wkt") or t.has("lon") or t.has("lat"),
    )
    return row, reasons


def _plan_regions(
    tables: list[Table], existing: dict[str, Region], h: HeaderAliases, rej: _Rejections
) -> tuple[dict[str, _RegionRow], dict[str, tuple[str, int]]]:
    """Accepted rows by code, and where each rejected code was (for people's messages)."""
    first: dict[str, _RegionRow] = {}
    rejected_at: dict[str, tuple[str, int]] = {}
    candidates: list[_RegionRow] = []
    for t in tables:
        for number, cells in t.rows:
            row, reasons = _parse_region(t, number, cells, h)
            if row is not None:
                if (prev := first.get(row.code)) is not None:
                    reasons.append(
                        f"duplicate {h.label('regions', 'code')} {row.code}: already at {_where(prev.sheet, prev.row, t.sheet)}"
                    )
                else:
                    first[row.code] = row
            if reasons:
                rej.add("regions", t.sheet, number, reasons)
                if row is not None:
                    rejected_at.setdefault(row.code, (t.sheet, number))
            elif row is not None:
                candidates.append(row)
    accepted: dict[str, _RegionRow] = {}
    # Shorter codes first, so a parent is decided before its children.
    for row in sorted(candidates, key=lambda r: len(r.code)):
        p = row.parent
        if p is None or p in accepted or p in existing:
            accepted[row.code] = row
        elif p in rejected_at:
            s, n = rejected_at[p]
            rej.add(
                "regions",
                row.sheet,
                row.row,
                [f"parent region {p} was rejected ({_where(s, n, row.sheet)})"],
            )
            rejected_at.setdefault(row.code, (row.sheet, row.row))
        else:
            rej.add(
                "regions",
                row.sheet,
                row.row,
                [f"parent region {p} is missing: not in the database nor in this file"],
            )
            rejected_at.setdefault(row.code, (row.sheet, row.row))
    return accepted, rejected_at


# --- people ----------------------------------------------------------------------------------


class _PlaceIndex:
    """所属村组 text → region codes. A region matches its own name and its name prefixed with
    its ancestors' names ("石门村一组", "青山镇石门村一组"), so repeated group names such as
    "一组" can be told apart by writing the village too."""

    def __init__(self, known: dict[str, _Known]):
        self.by_text: dict[str, set[str]] = defaultdict(set)
        for code in known:
            names: list[str] = []
            c: str | None = code
            while c is not None and c in known:
                names.insert(0, _squash(known[c].name))
                c = parent_of(c)
            for i in range(len(names)):
                self.by_text["".join(names[i:])].add(code)

    def find(self, text: str) -> set[str]:
        return self.by_text.get(_squash(text), set())


class _PeoplePlanner:
    def __init__(
        self,
        h: HeaderAliases,
        roles: Roles,
        known: dict[str, _Known],
        rejected_regions: dict[str, tuple[str, int]],
        rej: _Rejections,
    ):
        self.h = h
        self.roles = roles
        self.known = known
        self.rejected_regions = rejected_regions
        self.rej = rej
        self._places: _PlaceIndex | None = None

    def lbl(self, fld: str) -> str:
        return self.h.label("people", fld)

    def places(self) -> _PlaceIndex:
        if self._places is None:  # built only when some row names its region instead of coding it
            self._places = _PlaceIndex(self.known)
        return self._places

    def _region(self, code_text: str, place_text: str, reasons: list[str]) -> str | None:
        text = code_text or place_text
        if not text:
            reasons.append(f"missing {self.lbl('region_code')} and {self.lbl('place')}")
            return None
        if code_text or re.fullmatch(r"[\d\s]+", place_text):
            try:
                code = normalise_code(text)
            except CellError as e:
                reasons.append(str(e))
                return None
            if code in self.known:
                return code
            if code in self.rejected_regions:
                s, n = self.rejected_regions[code]
                reasons.append(
                    f"region {code} is unknown: its regions row was rejected (sheet {s!r} row {n})"
                )
            else:
                reasons.append(f"region {code} is unknown: not in the database nor in this file")
            return None
        found = self.places().find(place_text)
        if len(found) == 1:
            return next(iter(found))
        if not found:
            reasons.append(f"{self.lbl('place')} {place_text!r} matches no known region name")
        else:
            listed = ", ".join(f"{c} {self.known[c].name}" for c in sorted(found)[:5])
            reasons.append(
                f"{self.lbl('place')} {place_text!r} matches {len(found)} regions ({listed}); "
                "write the village with the group (石门村一组) or give the code"
            )
        return None

    def parse(
        self, t: Table, number: int, cells: list[str]
    ) -> tuple[_PersonRow | None, list[str], str | None]:
        """The row (None if rejected), its reasons, and its key when one can be told."""
        reasons: list[str] = []
        name = t.cell(cells, "name")
        if not name:
            reasons.append(f"missing {self.lbl('name')}")
        phone: str | None = None
        phone_text = t.cell(cells, "phone")
        if not phone_text:
            reasons.append(f"missing {self.lbl('phone')}")
        else:
            try:
                phone = normalise_phone(phone_text)
            except CellError as e:
                reasons.append(str(e))
        role: str | None = None
        role_text = t.cell(cells, "role")
        if not role_text:
            reasons.append(f"missing {self.lbl('role')}")
        else:
            role = self.roles.resolve(role_text)
            if role is None:
                reasons.append(
                    f"unknown {self.lbl('role')} {role_text!r}: not a role code, label or alias in roles.toml"
                )
        region = self._region(t.cell(cells, "region_code"), t.cell(cells, "place"), reasons)
        if role is not None and region is not None:
            want = self.roles[role].level
            have = self.known[region].level
            if want != have:
                reasons.append(
                    f"{self.lbl('role')} {role_text!r} is a {want.value}-level role but region "
                    f"{region} ({self.known[region].name}) is a {have.value}; it needs a {want.code_length}-digit code"
                )
        key = t.cell(cells, "key") or phone
        if key is not None and len(key) > KEY_MAX:
            reasons.append(f"{self.lbl('key')} is longer than {KEY_MAX} characters")
        wecom = t.cell(cells, "wecom") or None
        if wecom is not None and not _WECOM_ID.fullmatch(wecom):
            reasons.append(
                f"{self.lbl('wecom')} {wecom!r} is not a WeCom userid (letters, digits, _-@. ; at most 64)"
            )
        try:
            active = parse_active(t.cell(cells, "active"))
        except CellError as e:
            active = True
            reasons.append(str(e))
        if reasons or key is None or phone is None or role is None or region is None:
            return None, reasons, key
        row = _PersonRow(
            sheet=t.sheet,
            row=number,
            key=key,
            name=name,
            phone=phone,
            role=role,
            region_code=region,
            active=active,
            deputy_text=t.cell(cells, "deputy"),
            set_deputy=t.has("deputy"),
            wecom=wecom,
            set_wecom=t.has("wecom"),
        )
        return row, reasons, key


@dataclass
class _Directory:
    """Who will exist after the import: the database overlaid with the accepted rows."""

    keys: set[str]
    by_phone: dict[str, set[str]]
    by_name: dict[str, set[str]]

    @classmethod
    def build(cls, existing: dict[str, Person], accepted: dict[str, _PersonRow]) -> _Directory:
        d = cls(set(), defaultdict(set), defaultdict(set))
        people: list[tuple[str, str, str]] = [
            (k, p.name, p.phone) for k, p in existing.items() if k not in accepted
        ]
        people += [(k, r.name, r.phone) for k, r in accepted.items()]
        for k, name, phone in people:
            d.keys.add(k)
            d.by_phone[phone].add(k)
            d.by_name[_squash(name)].add(k)
        return d

    def resolve(self, text: str) -> tuple[str | None, str]:
        """替补人 by key (编号 or phone key), then by phone, then by unique name."""
        t = text.strip()
        if t in self.keys:
            return t, ""
        try:
            phone: str | None = normalise_phone(t)
        except CellError:
            phone = None
        if phone is not None:
            if phone in self.keys:
                return phone, ""
            found = self.by_phone.get(phone, set())
        else:
            found = self.by_name.get(_squash(t), set())
        if len(found) == 1:
            return next(iter(found)), ""
        if found:
            return (
                None,
                f"替补人 {text!r} matches {len(found)} people ({', '.join(sorted(found)[:5])}); give the 编号 or phone",
            )
        return (
            None,
            f"替补人 {text!r} not found: no 编号, phone or name matches in this file or the database",
        )


def _plan_people(
    tables: list[Table],
    existing: dict[str, Person],
    planner: _PeoplePlanner,
    rej: _Rejections,
) -> tuple[dict[str, _PersonRow], set[str]]:
    """Accepted rows by key, and every key the file names (rejected rows included: a person
    whose row was rejected is in the file, not missing from it)."""
    first: dict[str, tuple[str, int]] = {}
    accepted: dict[str, _PersonRow] = {}
    rejected_mentions: dict[str, tuple[str, int]] = {}  # key/phone/name of rejected rows
    for t in tables:
        for number, cells in t.rows:
            row, reasons, key = planner.parse(t, number, cells)
            if key is not None:
                if key in first:
                    s, n = first[key]
                    reasons.append(f"duplicate key {key}: already at {_where(s, n, t.sheet)}")
                    row = None
                else:
                    first[key] = (t.sheet, number)
            if row is None:
                rej.add("people", t.sheet, number, reasons)
                for mention in (key, t.cell(cells, "name"), t.cell(cells, "phone")):
                    if mention:
                        rejected_mentions.setdefault(_squash(mention), (t.sheet, number))
            else:
                accepted[row.key] = row
    # Deputies resolve after the whole file is read (a deputy may come later in the file).
    # Rejecting a row can orphan rows that named it, hence the loop until nothing changes.
    while True:
        directory = _Directory.build(existing, accepted)
        newly: list[tuple[_PersonRow, str]] = []
        for row in accepted.values():
            row.deputy_key = None
            if not row.deputy_text:
                continue
            dep, why = directory.resolve(row.deputy_text)
            if dep == row.key:
                why = "替补人 is the person themself"
            if why:
                if (m := rejected_mentions.get(_squash(row.deputy_text))) is not None:
                    why += f" (the row at {_where(m[0], m[1], row.sheet)} was rejected)"
                newly.append((row, why))
            else:
                row.deputy_key = dep
        if not newly:
            return accepted, set(first)
        for row, why in newly:
            del accepted[row.key]
            rej.add("people", row.sheet, row.row, [why])
            rejected_mentions.setdefault(_squash(row.key), (row.sheet, row.row))
            rejected_mentions.setdefault(_squash(row.name), (row.sheet, row.row))


# --- apply -----------------------------------------------------------------------------------


def _assign(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for attr, value in values.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed = True
    return changed


async def import_roster(
    db: Database,
    path: Path,
    *,
    roles: Roles | None = None,
    headers: HeaderAliases | None = None,
    now: datetime,
    deactivate_missing: bool = False,
) -> ImportReport:
    """Import regions and people from a CSV or XLSX file. Raises RosterError when the file as a
    whole is unusable; row problems are reported, not raised."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    roles = roles or load_roles()
    headers = headers or load_header_aliases()
    # openpyxl and csv are blocking; a big workbook must not stall the daemon's event loop.
    read: ReadResult = await asyncio.to_thread(read_roster_file, path, headers)
    report = ImportReport(path=path, ignored_sheets=read.ignored_sheets)
    report.sheets = [
        SheetInfo(t.sheet, t.kind, t.header_row, len(t.rows), tuple(t.ignored_columns))
        for t in read.tables
    ]
    region_tables = [t for t in read.tables if t.kind == "regions"]
    people_tables = [t for t in read.tables if t.kind == "people"]
    rej = _Rejections()

    async with db.session() as s, s.begin():
        existing_regions = {r.code: r for r in (await s.exec(select(Region))).all()}
        existing_people = {p.key: p for p in (await s.exec(select(Person))).all()}

        accepted_regions, rejected_regions = _plan_regions(
            region_tables, existing_regions, headers, rej
        )
        for code, row in accepted_regions.items():
            values: dict[str, Any] = {
                "name": row.name,
                "level": row.level.value,
                "parent_code": row.parent,
            }
            if row.set_geometry:
                values["geometry_wkt"] = row.geometry
            current = existing_regions.get(code)
            if current is None:
                s.add(Region(code=code, updated_at=now, **values))
                report.regions.added += 1
            elif _assign(current, values):
                current.updated_at = now
                report.regions.updated += 1
            else:
                report.regions.unchanged += 1
        await s.flush()  # regions first: people refer to them

        if people_tables:
            known = {c: _Known(r.name, Level(r.level)) for c, r in existing_regions.items()}
            known.update({c: _Known(r.name, r.level) for c, r in accepted_regions.items()})
            planner = _PeoplePlanner(headers, roles, known, rejected_regions, rej)
            accepted_people, file_keys = _plan_people(people_tables, existing_people, planner, rej)
            new_people: list[dict[str, Any]] = []
            for key, prow in accepted_people.items():
                current_p = existing_people.get(key)
                values = {
                    "name": prow.name,
                    "phone": prow.phone,
                    "role": prow.role,
                    "region_code": prow.region_code,
                    "active": prow.active,
                }
                if prow.set_deputy:
                    values["deputy_key"] = prow.deputy_key
                if prow.set_wecom:
                    values["wecom_userid"] = prow.wecom
                if current_p is None:
                    new_people.append(
                        {
                            "deputy_key": None,
                            "wecom_userid": None,
                            **values,
                            "key": key,
                            "updated_at": now,
                        }
                    )
                    report.people.added += 1
                elif _assign(current_p, values):
                    current_p.updated_at = now
                    report.people.updated += 1
                else:
                    report.people.unchanged += 1
            if new_people:
                # Core executemany: the ORM would insert rows one by one on SQLite to fetch
                # each new id, which nobody here needs.
                conn = await s.connection()
                await conn.execute(insert(Person), new_people)
            missing = [p for k, p in existing_people.items() if k not in file_keys]
            report.not_in_file = len(missing)
            if deactivate_missing:
                for p in missing:
                    if p.active:
                        p.active = False
                        p.updated_at = now
                        report.deactivated += 1

        speaker_tables = [t for t in read.tables if t.kind == "speakers"]
        if speaker_tables:
            known_all = {c: _Known(r.name, Level(r.level)) for c, r in existing_regions.items()}
            known_all.update({c: _Known(r.name, r.level) for c, r in accepted_regions.items()})
            await _import_speakers(s, speaker_tables, known_all, rej, report, now)

        report.regions.rejected = rej.count("regions")
        report.people.rejected = rej.count("people")
        report.speakers.rejected = rej.count("speakers")
        order = {t.sheet: i for i, t in enumerate(read.tables)}
        report.rejections = sorted(rej.items.values(), key=lambda r: (order.get(r.sheet, 0), r.row))
        s.add(Event(at=now, kind="roster_imported", data=_event_data(report)))
    return report


async def _import_speakers(s: Any, tables: list[Table], known: dict[str, _Known], rej: _Rejections,
                           report: ImportReport, now: datetime) -> None:
    from warnd.roster.speakers import SpeakerRow, apply_speakers, parse_speaker

    levels = {c: k.level for c, k in known.items()}
    places: list[_PlaceIndex] = []

    def find_place(text: str) -> set[str]:
        if not places:
            places.append(_PlaceIndex(known))
        return places[0].find(text)

    accepted: dict[str, SpeakerRow] = {}
    for t in tables:
        for number, cells in t.rows:
            row, reasons = parse_speaker(lambda f, c=cells, tb=t: tb.cell(c, f), t.has, t.sheet, number,  # type: ignore[misc]
                                         levels, find_place)
            if row is not None and (prev := accepted.get(row.device_id)) is not None:
                reasons = [f"duplicate 设备编号 {row.device_id}: already at {_where(prev.sheet, prev.row, t.sheet)}"]
                row = None
            if row is None:
                rej.add("speakers", t.sheet, number, reasons)
            else:
                accepted[row.device_id] = row
    added, updated, unchanged = await apply_speakers(s, list(accepted.values()), now)
    report.speakers.added, report.speakers.updated, report.speakers.unchanged = added, updated, unchanged


def _event_data(report: ImportReport) -> dict[str, Any]:
    def counts(c: Counts) -> dict[str, int]:
        return {
            "added": c.added,
            "updated": c.updated,
            "unchanged": c.unchanged,
            "rejected": c.rejected,
        }

    return {
        "file": report.path.name,
        "regions": counts(report.regions),
        "people": counts(report.people),
        "speakers": counts(report.speakers),
        "not_in_file": report.not_in_file,
        "deactivated": report.deactivated,
    }


def format_report(report: ImportReport) -> str:
    """Plain text for the terminal: what was read, the counts, every rejected row."""
    kind_zh = {"regions": "regions 区划", "people": "people 人员", "speakers": "speakers 喇叭"}
    lines = [f"Roster import: {report.path}"]
    for sh in report.sheets:
        line = f"  sheet {sh.sheet!r}: {kind_zh[sh.kind]}, header at row {sh.header_row}, {sh.data_rows} data rows"
        if sh.ignored_columns:
            line += f"; ignored columns: {', '.join(sh.ignored_columns)}"
        lines.append(line)
    for name in report.ignored_sheets:
        lines.append(f"  sheet {name!r}: ignored (no regions or people header row found)")
    kinds = {sh.kind for sh in report.sheets}
    for kind, c in (("regions", report.regions), ("people", report.people), ("speakers", report.speakers)):
        if kind in kinds:
            lines.append(
                f"{kind}: {c.added} added, {c.updated} updated, {c.unchanged} unchanged, {c.rejected} rejected"
            )
    if report.not_in_file is not None:
        if report.deactivated:
            lines.append(
                f"people in the database but not in this file: {report.not_in_file} ({report.deactivated} deactivated)"
            )
        elif report.not_in_file:
            lines.append(
                f"people in the database but not in this file: {report.not_in_file} (kept active)"
            )
    if report.rejections:
        lines.append(
            f"rejected rows ({len(report.rejections)}; nothing from them was imported — fix and import again):"
        )
        for r in report.rejections:
            lines.append(f"  {r.sheet} row {r.row}: {r.reason}")
    else:
        lines.append("no rows rejected")
    return "\n".join(lines)
