"""`warnd public import FILE`: a public recipient list into `public_recipients`.

Re-importable: a row is keyed by (number, village/group, list kind); a known key is updated, a
new one added; with `deactivate_missing`, rows of the same list (file name) no longer in it
are deactivated. Opt-outs live apart (public_opt_outs, by number), so a re-import never
undoes one. Rows with a problem are rejected and reported with their row number and the
reasons in Chinese; the good rows are applied in one transaction with Core bulk statements
(100,000 rows take seconds).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import select

from warnd.core.domain import Level
from warnd.core.phones import mask_phone
from warnd.db.engine import Database
from warnd.db.models import Event, PublicRecipient, Region
from warnd.public.lists import (
    KINDS,
    ListError,
    ListRow,
    Place,
    Sheet,
    norm_header,
    parse_row,
    read_list,
)

T = PublicRecipient.__table__  # type: ignore[attr-defined]
_FIELDS = ("name", "village_code", "source", "consent_date", "shelter", "list_name", "active")


@dataclass(frozen=True)
class Rejected:
    sheet: str
    row: int
    reasons: tuple[str, ...]
    phone: str  # masked, as the cell said it


@dataclass
class ListReport:
    path: Path
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    villages: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def as_json(self) -> dict[str, Any]:
        return {"file": self.path.name, "ok": self.ok, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "deactivated": self.deactivated, "villages": self.villages,
                "kinds": dict(self.by_kind),
                "rejected": [{"sheet": r.sheet, "row": r.row, "phone": r.phone, "reasons": list(r.reasons)}
                             for r in self.rejected]}

    def text(self, limit: int = 50) -> str:
        """The report in Chinese for the person who imported: counts, then rejected rows
        grouped by reason (each reason once, with its rows)."""
        kinds = "，".join(f"{KINDS.get(k, k)}{n}人" for k, n in sorted(self.by_kind.items()))
        lines = [f"{self.path.name}：新增 {self.added}，更新 {self.updated}，未变 {self.unchanged}，"
                 f"停用 {self.deactivated}，未导入 {len(self.rejected)} 行；覆盖 {self.villages} 个村"
                 + (f"（{kinds}）" if kinds else "")]
        groups: dict[str, list[str]] = {}
        for r in self.rejected:
            for reason in r.reasons:
                groups.setdefault(reason if "“" not in reason else reason.split("“")[0] + "…", []).append(
                    f"{r.sheet}第{r.row}行")
        for reason, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            more = f" 等{len(rows)}行" if len(rows) > limit else ""
            lines.append(f"  未导入：{reason}：{'、'.join(rows[:limit])}{more}")
        return "\n".join(lines)


def _place(regions: list[Region]) -> Place:
    codes = {r.code: r.level for r in regions if r.level in (Level.VILLAGE, Level.GROUP)}
    names = {r.code: norm_header(r.name) for r in regions}
    parent = {r.code: r.parent_code for r in regions}
    villages: dict[str, list[str]] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    for r in regions:
        if r.level == Level.VILLAGE:
            villages.setdefault(names[r.code], []).append(r.code)
        elif r.level == Level.GROUP and r.parent_code:
            groups.setdefault((r.parent_code, names[r.code]), []).append(r.code)

    def by_names(township: str, village: str, group: str) -> list[str]:
        v = norm_header(village)
        found = villages.get(v) or villages.get(v + "村") or []
        if township:
            t = norm_header(township)
            found = [c for c in found if names.get(parent.get(c) or "", "").startswith(t[:2])]
        if group and found:
            g = norm_header(group)
            out = []
            for c in found:
                hits = groups.get((c, g)) or groups.get((c, names[c] + g)) or groups.get((c, g + "组")) or \
                    groups.get((c, names[c] + g + "组")) or []
                out += hits
            return out or found  # a group not on the register: counted under its village
        return found

    return Place(codes, by_names)


async def import_list(db: Database, path: Path, *, now: datetime, kind: str = "danger_zone", source: str = "",
                      deactivate_missing: bool = False) -> ListReport:
    """Import one list file. Raises ListError when the file cannot be used at all."""
    if kind not in KINDS:
        raise ListError(f"名单类型“{kind}”无法识别（可用：{'、'.join(KINDS)}）")
    sheets: list[Sheet] = await asyncio.to_thread(read_list, path)
    async with db.read() as s:
        regions = list((await s.exec(select(Region))).all())
    if not regions:
        raise ListError("数据库里还没有行政区划：请先导入行政区划表（warnd roster import），再导入公众名单")
    place = _place(regions)
    report = ListReport(path)
    accepted: dict[tuple[str, str, str], ListRow] = {}
    for sheet in sheets:
        for number, cells in sheet.rows:
            row, reasons = parse_row(sheet, number, cells, place, kind, source or path.stem)
            if row is not None and (row.phone, row.region_code, row.kind) in accepted:
                prev = accepted[(row.phone, row.region_code, row.kind)]
                reasons, row = [f"与{prev.sheet}第{prev.row}行重复（同一号码、村组和名单类型）"], None
            if row is None:
                j = sheet.columns["phone"]
                report.rejected.append(Rejected(sheet.name, number, tuple(reasons),
                                                mask_phone(cells[j] if j < len(cells) else "")))
            else:
                accepted[(row.phone, row.region_code, row.kind)] = row
    list_name = path.name[:128]
    async with db.session() as s, s.begin():
        conn = await s.connection()
        existing = {(r.phone, r.region_code, r.kind): r for r in (await conn.execute(select(
            T.c.id, T.c.phone, T.c.region_code, T.c.kind, *[T.c[f] for f in _FIELDS])))}
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for key, row in accepted.items():
            values = {"name": row.name, "village_code": row.region_code[:12], "source": row.source,
                      "consent_date": row.consent_date, "shelter": row.shelter, "list_name": list_name,
                      "active": True}
            report.by_kind[row.kind] += 1
            cur = existing.get(key)
            if cur is None:
                new.append({"phone": row.phone, "region_code": row.region_code, "kind": row.kind,
                            "updated_at": now, **values})
                report.added += 1
            elif any(getattr(cur, f) != v for f, v in values.items()):
                changed.append({"rid": cur.id, "updated_at": now, **values})
                report.updated += 1
            else:
                report.unchanged += 1
        for i in range(0, len(new), 5000):
            await conn.execute(insert(PublicRecipient), new[i:i + 5000])
        if changed:
            await conn.execute(update(T).where(T.c.id == bindparam("rid")).values(
                **{f: bindparam(f) for f in (*_FIELDS, "updated_at")}), changed)
        if deactivate_missing:
            gone = [{"rid": r.id} for k, r in existing.items()
                    if r.list_name == list_name and r.active and k not in accepted]
            if gone:
                await conn.execute(update(T).where(T.c.id == bindparam("rid")).values(active=False, updated_at=now),
                                   gone)
            report.deactivated = len(gone)
        report.villages = len({r.region_code[:12] for r in accepted.values()})
        s.add(Event(at=now, kind="public_list_imported", data={
            "file": path.name, "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "deactivated": report.deactivated, "rejected": len(report.rejected), "kinds": dict(report.by_kind)}))
    return report
