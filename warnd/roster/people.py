"""The people sheet (责任人) of a roster import, as counties keep it.

- One person may hold several roles (一肩挑: `村党支部书记、村委会主任`): one person, several roles.
  The same person on two rows (same name, number and place) is merged the same way.
- Numbers are told apart by what they are: the mobile goes to `phone` (SMS and voice), a
  second number (联系电话, often an office landline) to `phone2` (voice). An official with
  only a landline is imported with a warning: SMS can never reach them.
- The region comes from 行政区划代码, or by name from 所属乡镇 + 所属村 (+ 所属组) or 所属村组.
  A county-level role without a region is placed at the county.
- A 替补人 that resolves to nobody is a warning naming the row; the person is imported
  without a deputy (a silently missing deputy rung is what this import must not produce).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from warnd.core.domain import Level
from warnd.core.phones import Phone, national_format
from warnd.core.roles import Roles
from warnd.db.models import Person
from warnd.roster.cells import normalise_code, parse_active, parse_phone_cell
from warnd.roster.problems import LEVEL_ZH, CellError, Problem, Severity, problem
from warnd.roster.reading import HeaderAliases, Table
from warnd.roster.regions import Known, PlaceIndex, squash, where

KEY_MAX = 64  # people.key column width
_WECOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}")
# How a 职务 cell separates one person's roles; 兼 as in 村支书兼村主任.
_ROLE_SEPARATORS = re.compile(r"[、/，,；;\s]+|兼")


@dataclass
class PersonRow:
    sheet: str
    row: int
    key: str
    name: str
    phone: str  # the mobile, E.164, or "" (landline only)
    phone2: str | None
    set_phone2: bool  # the sheet says something about a second number
    roles: list[str]  # in the sheet's order; the first is people.role
    region_code: str
    active: bool
    deputy_text: str
    set_deputy: bool
    wecom: str | None
    set_wecom: bool
    deputy_key: str | None = None
    merged_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Note:
    severity: Severity
    sheet: str
    row: int
    problem: Problem


class PeoplePlanner:
    def __init__(self, h: HeaderAliases, roles: Roles, known: dict[str, Known],
                 rejected_regions: dict[str, tuple[str, int]]):
        self.h = h
        self.roles = roles
        self.known = known
        self.rejected_regions = rejected_regions
        self._places: PlaceIndex | None = None
        counties = [c for c, k in known.items() if k.level is Level.COUNTY]
        self.county = counties[0] if len(counties) == 1 else None

    def lbl(self, fld: str) -> str:
        return self.h.label("people", fld)

    def places(self) -> PlaceIndex:
        if self._places is None:  # built only when some row names its region instead of coding it
            self._places = PlaceIndex(self.known)
        return self._places

    # --- cells --------------------------------------------------------------------------------

    def _roles(self, text: str, reasons: list[Problem]) -> list[str]:
        if not text:
            reasons.append(problem("role_missing", role=self.lbl("role")))
            return []
        whole = self.roles.resolve(text)
        if whole is not None:
            return [whole]
        found: list[str] = []
        for token in (t for t in _ROLE_SEPARATORS.split(text) if t):
            code = self.roles.resolve(token)
            if code is None:
                reasons.append(problem("role_unknown", token, role=self.lbl("role")))
            elif code not in found:
                found.append(code)
        return found

    def _phones(self, t: Table, cells: list[str], reasons: list[Problem],
                notes: list[tuple[Severity, Problem]]) -> tuple[str | None, str | None]:
        """(mobile, second number); mobile "" for a landline-only official; None: rejected."""
        labels = {"phone_label": self.lbl("phone"), "phone2_label": self.lbl("phone2")}
        numbers: list[Phone] = []
        main_text, second_text = t.cell(cells, "phone"), t.cell(cells, "phone2")
        try:
            numbers += parse_phone_cell(main_text, **labels)
        except CellError as e:
            reasons.append(e.problem)
            return None, None
        try:
            numbers += parse_phone_cell(second_text, **labels)
        except CellError as e:
            if not numbers:
                reasons.append(e.problem)
                return None, None
            # The mobile is fine: a bad office number must not keep the official off the list.
            notes.append((Severity.WARNING, problem("phone2_ignored", second_text, phone2=self.lbl("phone2"))))
        numbers = list({p.e164: p for p in numbers}.values())  # the same number in both columns
        if not numbers:
            reasons.append(problem("phone_missing", phone=self.lbl("phone"), phone2=self.lbl("phone2")))
            return None, None
        mobiles = [p for p in numbers if p.mobile]
        others = [p for p in numbers if not p.mobile]
        if len(numbers) > 2:
            reasons.append(problem("phone_too_many", f"{main_text} {second_text}", phone2=self.lbl("phone2")))
            return None, None
        if not mobiles:
            return "", others[0].e164
        rest = mobiles[1:] + others
        return mobiles[0].e164, (rest[0].e164 if rest else None)

    def _region(self, t: Table, cells: list[str], roles: list[str], reasons: list[Problem],
                notes: list[tuple[Severity, Problem]]) -> str | None:
        code_text = t.cell(cells, "region_code")
        township, place, group = t.cell(cells, "township"), t.cell(cells, "place"), t.cell(cells, "group")
        if not code_text and re.fullmatch(r"[\d\s]+", place):
            code_text, place = place, ""  # a code written under 所属村组
        county_role = bool(roles) and all(self.roles[r].level is Level.COUNTY for r in roles)
        if code_text:
            try:
                code = normalise_code(code_text, self.lbl("region_code"))
            except CellError as e:
                reasons.append(e.problem)
                return None
            if code in self.known:
                return code
            if code in self.rejected_regions:
                s, n = self.rejected_regions[code]
                reasons.append(problem("region_rejected", f"{code}，{where(s, n, t.sheet)}"))
            else:
                reasons.append(problem("region_unknown", code, region_code=self.lbl("region_code")))
            return None
        # By name: 所属乡镇 + 所属村 + 所属组, or one 所属村组 cell; "青山镇" written in both
        # the township and the place cell counts once.
        parts = [p for p in (township, place, group) if p]
        if len(parts) > 1 and squash(parts[1]).startswith(squash(parts[0])):
            parts = parts[1:]
        if not parts:
            if county_role and self.county is not None:
                return self.county
            reasons.append(problem("region_missing", region_code=self.lbl("region_code"), place=self.lbl("place")))
            return None
        text = "".join(parts)
        found = self.places().find(text)
        if len(found) == 1:
            return next(iter(found))
        if not found and county_role and self.county is not None:
            # 县防指, 县应急局: their unit, not a region. A county role sits at the county anyway.
            notes.append((Severity.NOTE, problem("county_inferred", text)))
            return self.county
        if not found:
            reasons.append(problem("place_unknown", text))
        else:
            listed = "、".join(self._path(c) for c in sorted(found)[:4])
            reasons.append(problem("place_ambiguous", f"{text}：{listed}", region_code=self.lbl("region_code")))
        return None

    def _path(self, code: str) -> str:
        names: list[str] = []
        c: str | None = code
        while c is not None and c in self.known and self.known[c].level is not Level.COUNTY:
            names.insert(0, self.known[c].name)
            c = c[:-3] if len(c) > 6 else None
        return "".join(names) or self.known[code].name

    def parse(self, t: Table, number: int, cells: list[str]
              ) -> tuple[PersonRow | None, list[Problem], list[tuple[Severity, Problem]], str | None]:
        """The row (None if rejected), why it was rejected, notes about it, and its key when
        one can be told."""
        reasons: list[Problem] = []
        notes: list[tuple[Severity, Problem]] = []
        name = t.cell(cells, "name")
        if not name:
            reasons.append(problem("name_missing", name=self.lbl("name")))
        phone, phone2 = self._phones(t, cells, reasons, notes)
        roles = self._roles(t.cell(cells, "role"), reasons)
        region = self._region(t, cells, roles, reasons, notes)
        if roles and region is not None:
            have = self.known[region].level
            for r in roles:
                want = self.roles[r].level
                if want != have:
                    reasons.append(problem(
                        "role_level", f"{self.roles.label(r)}：{self._path(region)}",
                        want=LEVEL_ZH[want], have=LEVEL_ZH[have], digits=str(want.code_length)))
        key = t.cell(cells, "key") or phone or phone2
        if key and len(key) > KEY_MAX:
            reasons.append(problem("key_too_long", key=self.lbl("key")))
        wecom = t.cell(cells, "wecom") or None
        if wecom is not None and not _WECOM_ID.fullmatch(wecom):
            reasons.append(problem("wecom_invalid", wecom, wecom=self.lbl("wecom")))
        try:
            active = parse_active(t.cell(cells, "active"), self.lbl("active"))
        except CellError as e:
            active = True
            reasons.append(e.problem)
        if reasons or not key or phone is None or not roles or region is None:
            return None, reasons, notes, key or None
        if not phone:
            notes.append((Severity.WARNING, problem("landline_only", f"{name} {national_format(phone2 or '')}")))
        row = PersonRow(
            sheet=t.sheet, row=number, key=key, name=name, phone=phone, phone2=phone2,
            set_phone2=t.has("phone2") or phone2 is not None, roles=roles, region_code=region,
            active=active, deputy_text=t.cell(cells, "deputy"), set_deputy=t.has("deputy"),
            wecom=wecom, set_wecom=t.has("wecom"),
        )
        return row, reasons, notes, key


@dataclass
class Directory:
    """Who will exist after the import: the database overlaid with the accepted rows."""

    keys: set[str]
    by_phone: dict[str, set[str]]
    by_name: dict[str, set[str]]

    @classmethod
    def build(cls, existing: dict[str, Person], accepted: dict[str, PersonRow]) -> Directory:
        d = cls(set(), defaultdict(set), defaultdict(set))
        people: list[tuple[str, str, tuple[str | None, ...]]] = [
            (k, p.name, (p.phone, p.phone2)) for k, p in existing.items() if k not in accepted
        ]
        people += [(k, r.name, (r.phone, r.phone2)) for k, r in accepted.items()]
        for k, name, phones in people:
            d.keys.add(k)
            for ph in phones:
                if ph:
                    d.by_phone[ph].add(k)
            d.by_name[squash(name)].add(k)
        return d

    def resolve(self, text: str) -> tuple[str | None, str]:
        """替补人 by key (编号 or phone key), then by phone, then by unique name. Returns
        (key, "") or (None, problem code)."""
        t = text.strip()
        if t in self.keys:
            return t, ""
        try:
            phones = parse_phone_cell(t)
        except CellError:
            phones = []
        if len(phones) == 1:
            ph = phones[0].e164
            if ph in self.keys:
                return ph, ""
            found = self.by_phone.get(ph, set())
        else:
            found = self.by_name.get(squash(t), set())
        if len(found) == 1:
            return next(iter(found)), ""
        return None, "deputy_ambiguous" if found else "deputy_not_found"


def _same_person(a: PersonRow, b: PersonRow) -> bool:
    return (squash(a.name), a.phone, a.region_code) == (squash(b.name), b.phone, b.region_code)


def plan_people(tables: Iterable[Table], existing: dict[str, Person], planner: PeoplePlanner
                ) -> tuple[dict[str, PersonRow], set[str], list[tuple[str, int, list[Problem]]], list[Note]]:
    """Accepted rows by key; every key the file names (rejected rows included: a person whose
    row was rejected is in the file, not missing from it); rejected rows; notes."""
    first: dict[str, tuple[str, int]] = {}
    accepted: dict[str, PersonRow] = {}
    rejected: list[tuple[str, int, list[Problem]]] = []
    notes: list[Note] = []
    rejected_mentions: dict[str, tuple[str, int]] = {}  # key/phone/name of rejected rows
    key_label = planner.lbl("key") if any(t.has("key") for t in tables) else planner.lbl("phone")
    for t in tables:
        for number, cells in t.rows:
            row, reasons, row_notes, key = planner.parse(t, number, cells)
            if key is not None and key in first:
                s, n = first[key]
                earlier = accepted.get(key)
                if row is not None and earlier is not None and _same_person(earlier, row):
                    # 一肩挑 written as two rows: one person with both rows' roles.
                    earlier.roles += [r for r in row.roles if r not in earlier.roles]
                    earlier.merged_rows.append(number)
                    if not earlier.deputy_text:
                        earlier.deputy_text = row.deputy_text
                    notes.append(Note(Severity.NOTE, t.sheet, number, problem(
                        "same_person_merged", f"{row.name}，同{where(s, n, t.sheet)}")))
                    continue
                reasons.append(problem("key_duplicate", f"{key}，同{where(s, n, t.sheet)}", key=key_label))
                row = None
            elif key is not None:
                first[key] = (t.sheet, number)
            if row is None:
                rejected.append((t.sheet, number, reasons))
                for mention in (key, t.cell(cells, "name"), t.cell(cells, "phone")):
                    if mention:
                        rejected_mentions.setdefault(squash(mention), (t.sheet, number))
                continue
            notes += [Note(sev, t.sheet, number, p) for sev, p in row_notes]
            accepted[row.key] = row
    # Deputies resolve after the whole file is read (a deputy may come later in the file).
    directory = Directory.build(existing, accepted)
    label = planner.lbl("deputy")
    for row in accepted.values():
        if not row.deputy_text:
            continue
        dep, code = directory.resolve(row.deputy_text)
        if dep == row.key:
            dep, code = None, "deputy_self"
        if dep is not None:
            row.deputy_key = dep
            continue
        detail = row.deputy_text
        if code == "deputy_not_found" and (m := rejected_mentions.get(squash(row.deputy_text))) is not None:
            code, detail = "deputy_rejected", f"{row.deputy_text}，{where(m[0], m[1], row.sheet)}"
        notes.append(Note(Severity.WARNING, row.sheet, row.row, problem(code, detail, deputy=label)))
    return accepted, set(first), rejected, notes
