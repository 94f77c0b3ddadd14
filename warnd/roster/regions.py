"""The regions sheet (行政区划) of a roster import: rows parsed and checked against each other and
the database. Parents are decided before children, whatever the row order."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from warnd.core.domain import Level
from warnd.db.models import Region
from warnd.roster.cells import (
    level_of,
    normalise_code,
    parent_of,
    parse_level,
    parse_point,
    parse_polygon,
)
from warnd.roster.problems import CellError, Problem, problem
from warnd.roster.reading import HeaderAliases, Table


@dataclass
class RegionRow:
    sheet: str
    row: int
    code: str
    name: str
    level: Level
    parent: str | None
    geometry: str | None
    set_geometry: bool  # a point or WKT column is present


@dataclass(frozen=True)
class Known:
    """A region as the people and device sheets see it: in the database or accepted now."""

    name: str
    level: Level


def where(sheet: str, row: int, here: str) -> str:
    return f"第{row}行" if sheet == here else f"「{sheet}」表第{row}行"


def squash(text: str) -> str:
    return re.sub(r"[\s/／\\·.\-—]+", "", text)


def _parse(t: Table, number: int, cells: list[str], h: HeaderAliases) -> tuple[RegionRow | None, list[Problem]]:
    def lbl(fld: str) -> str:
        return h.label("regions", fld)

    reasons: list[Problem] = []
    code: str | None = None
    code_text = t.cell(cells, "code")
    if not code_text:
        reasons.append(problem("code_missing", code=lbl("code")))
    else:
        try:
            code = normalise_code(code_text, lbl("code"))
        except CellError as e:
            reasons.append(e.problem)
    name = t.cell(cells, "name")
    if not name:
        reasons.append(problem("name_missing", name=lbl("name")))
    if code is not None:
        level = level_of(code)
        if level_text := t.cell(cells, "level"):
            try:
                if parse_level(level_text, lbl("level")) != level:
                    reasons.append(problem("level_mismatch", f"{code}是{len(code)}位，填的是“{level_text}”",
                                           level=lbl("level")))
            except CellError as e:
                reasons.append(e.problem)
        if parent_text := t.cell(cells, "parent"):
            try:
                parent = normalise_code(parent_text, lbl("parent"))
                if parent != parent_of(code):
                    expected = parent_of(code) or "无（县是最上级）"
                    reasons.append(problem("parent_mismatch", f"{parent}，应为{expected}", parent=lbl("parent")))
            except CellError as e:
                reasons.append(problem("parent_bad", e.problem.detail, parent=lbl("parent")))
    try:
        point = parse_point(t.cell(cells, "lon"), t.cell(cells, "lat"), lbl("lon"), lbl("lat"))
    except CellError as e:
        point = None
        reasons.append(e.problem)
    try:
        polygon = parse_polygon(t.cell(cells, "wkt"), lbl("wkt"))
    except CellError as e:
        polygon = None
        reasons.append(e.problem)
    if code is None:
        return None, reasons
    row = RegionRow(
        sheet=t.sheet, row=number, code=code, name=name, level=level_of(code), parent=parent_of(code),
        # One geometry column: the boundary, when given, is the better one.
        geometry=polygon or point, set_geometry=t.has("wkt") or t.has("lon") or t.has("lat"),
    )
    return row, reasons


def plan_regions(
    tables: list[Table], existing: dict[str, Region], h: HeaderAliases,
) -> tuple[dict[str, RegionRow], dict[str, tuple[str, int]], list[tuple[str, int, list[Problem]]]]:
    """Accepted rows by code; where each rejected code was (for people's messages); and the
    rejected rows as (sheet, row, reasons)."""
    first: dict[str, RegionRow] = {}
    rejected_at: dict[str, tuple[str, int]] = {}
    rejected: list[tuple[str, int, list[Problem]]] = []
    candidates: list[RegionRow] = []
    for t in tables:
        for number, cells in t.rows:
            row, reasons = _parse(t, number, cells, h)
            if row is not None:
                if (prev := first.get(row.code)) is not None:
                    reasons.append(problem("duplicate_code", f"{row.code}，同{where(prev.sheet, prev.row, t.sheet)}",
                                           code=h.label("regions", "code")))
                else:
                    first[row.code] = row
            if reasons:
                rejected.append((t.sheet, number, reasons))
                if row is not None:
                    rejected_at.setdefault(row.code, (t.sheet, number))
            elif row is not None:
                candidates.append(row)
    accepted: dict[str, RegionRow] = {}
    # Shorter codes first, so a parent is decided before its children.
    for row in sorted(candidates, key=lambda r: len(r.code)):
        p = row.parent
        if p is None or p in accepted or p in existing:
            accepted[row.code] = row
            continue
        if p in rejected_at:
            s, n = rejected_at[p]
            rejected.append((row.sheet, row.row, [problem("parent_rejected", f"{p}，{where(s, n, row.sheet)}")]))
        else:
            rejected.append((row.sheet, row.row, [problem("parent_missing", p)]))
        rejected_at.setdefault(row.code, (row.sheet, row.row))
    return accepted, rejected_at, rejected


_COMMITTEE = (("村民委员会", "村"), ("村委会", "村"), ("居民委员会", "社区"), ("居委会", "社区"))


class PlaceIndex:
    """Region name → codes. A region matches its own name and its name prefixed with its
    ancestors' names ("石门村一组", "青山镇石门村一组"), so repeated group names such as
    "一组" can be told apart by writing the village too."""

    def __init__(self, known: dict[str, Known]):
        self.by_text: dict[str, set[str]] = defaultdict(set)
        for code in known:
            names: list[str] = []
            c: str | None = code
            while c is not None and c in known:
                names.insert(0, squash(known[c].name))
                c = parent_of(c)
            for i in range(len(names)):
                self.by_text["".join(names[i:])].add(code)

    def find(self, text: str) -> set[str]:
        t = squash(text)
        found = self.by_text.get(t)
        if found:
            return found
        for long, short in _COMMITTEE:  # 石门村委会 is 石门村
            if long in t:
                found = self.by_text.get(t.replace(long, short))
                if found:
                    return found
        return set()
