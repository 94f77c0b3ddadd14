"""Reading roster files: CSV (UTF-8, UTF-8 with BOM, UTF-16, GB18030/GBK) and XLSX, header
recognition through configurable aliases, cells as plain strings.

Nothing here touches the database; the importer validates and applies what this returns.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from warnd.config.files import package_default

Kind = Literal["regions", "people", "speakers"]

REGION_FIELDS = ("code", "name", "parent", "level", "lon", "lat", "wkt")
PEOPLE_FIELDS = (
    "key",
    "name",
    "phone",
    "role",
    "region_code",
    "place",
    "deputy",
    "wecom",
    "active",
)
# Device sheet (loudspeakers, warnd.roster.speakers). Optional in roster-headers.toml: a file
# without a [speakers] table uses these.
SPEAKER_FIELDS = ("device_id", "region_code", "place", "capabilities", "lon", "lat", "active")
SPEAKER_HEADERS: dict[str, tuple[str, ...]] = {
    "device_id": ("设备编号", "设备ID", "终端编号", "喇叭编号", "device_id"),
    "region_code": ("行政区划代码", "所在区划代码", "区划代码", "region_code"),
    "place": ("所属村组", "所在村组", "安装位置", "place"),
    "capabilities": ("能力", "功能", "设备能力", "capabilities"),
    "lon": ("经度", "lon", "longitude"),
    "lat": ("纬度", "lat", "latitude"),
    "active": ("启用", "在用", "状态", "active"),
}


class RosterError(ValueError):
    """The file as a whole cannot be imported (unreadable, no recognisable header, bad config)."""


@dataclass(frozen=True)
class HeaderAliases:
    """field → header texts, per kind. The first text of each field is its canonical header."""

    regions: dict[str, tuple[str, ...]]
    people: dict[str, tuple[str, ...]]
    speakers: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SPEAKER_HEADERS))

    def for_kind(self, kind: Kind) -> dict[str, tuple[str, ...]]:
        return {"regions": self.regions, "people": self.people, "speakers": self.speakers}[kind]

    def label(self, kind: Kind, fld: str) -> str:
        names = self.for_kind(kind).get(fld)
        return names[0] if names else fld


def load_header_aliases(path: Path | None = None) -> HeaderAliases:
    path = path or package_default("roster-headers.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RosterError(f"{path}: {e}") from e
    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind, fields in (("regions", REGION_FIELDS), ("people", PEOPLE_FIELDS), ("speakers", SPEAKER_FIELDS)):
        spec = raw.get(kind)
        if kind == "speakers" and spec is None:
            tables[kind] = dict(SPEAKER_HEADERS)
            continue
        if not isinstance(spec, dict):
            raise RosterError(f"{path}: missing [{kind}] table")
        unknown = set(spec) - set(fields)
        if unknown:
            raise RosterError(
                f"{path}: [{kind}] has unknown fields {sorted(unknown)}; known: {list(fields)}"
            )
        table: dict[str, tuple[str, ...]] = {}
        seen: dict[str, str] = {}
        for fld in fields:
            names = spec.get(fld, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RosterError(f"{path}: [{kind}].{fld} must be a list of strings")
            for n in names:
                norm = normalise_header(n)
                # One header text meaning two fields would make recognition depend on order.
                if norm in seen and seen[norm] != fld:
                    raise RosterError(
                        f"{path}: [{kind}] header {n!r} is listed for both {seen[norm]} and {fld}"
                    )
                seen[norm] = fld
            table[fld] = tuple(names) or (fld,)
        tables[kind] = table
    for kind, required in (("regions", ("code", "name")), ("people", ("name", "phone", "role"))):
        for fld in required:
            if not raw[kind].get(fld):
                raise RosterError(f"{path}: [{kind}].{fld} needs at least one header text")
    return HeaderAliases(regions=tables["regions"], people=tables["people"], speakers=tables["speakers"])


_BRACKET_NOTE = re.compile(r"[（(【\[][^（）()【】\[\]]*[)）】\]]$")


def normalise_header(text: str) -> str:
    """Header comparison key: NFKC, no whitespace, no '*' markers, no trailing bracketed note."""
    t = unicodedata.normalize("NFKC", text)
    t = re.sub(r"\s+", "", t).strip("*")
    stripped = _BRACKET_NOTE.sub("", t)
    return (stripped or t).strip("*").casefold()


@dataclass
class Table:
    """One recognised sheet: its kind, header position and data rows (1-based row numbers)."""

    sheet: str
    kind: Kind
    header_row: int
    columns: dict[str, int]  # field → column index
    ignored_columns: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)

    def has(self, fld: str) -> bool:
        return fld in self.columns

    def cell(self, cells: Sequence[str], fld: str) -> str:
        i = self.columns.get(fld)
        if i is None or i >= len(cells):
            return ""
        return cells[i]


@dataclass
class ReadResult:
    tables: list[Table]
    ignored_sheets: list[str]


def _match_header(
    cells: Sequence[str], aliases: dict[str, tuple[str, ...]], where: str
) -> tuple[dict[str, int], list[str]]:
    """field → column. When two columns mean one field (手机号码 and 联系电话), the one whose
    header comes first in the alias list wins and the other is ignored, so a sheet with a
    mobile and an office number still imports; two identical headers are ambiguous."""
    lookup: dict[str, tuple[str, int]] = {}
    for fld, names in aliases.items():
        for rank, n in enumerate(names):
            lookup.setdefault(normalise_header(n), (fld, rank))
    best: dict[str, tuple[int, int]] = {}  # field → (rank, column)
    ignored: list[str] = []
    for i, c in enumerate(cells):
        hit = lookup.get(normalise_header(c)) if c else None
        if hit is None:
            if c:
                ignored.append(c)
            continue
        fld, rank = hit
        prev = best.get(fld)
        if prev is not None and prev[0] == rank:
            raise RosterError(f"{where}: columns {prev[1] + 1} and {i + 1} are both headed {c!r}")
        if prev is None or rank < prev[0]:
            if prev is not None:
                ignored.append(cells[prev[1]])
            best[fld] = (rank, i)
        else:
            ignored.append(c)
    return {fld: col for fld, (_, col) in best.items()}, ignored


def _header_kind(cells: Sequence[str], aliases: HeaderAliases) -> Kind | None:
    norm = {normalise_header(c) for c in cells if c}

    def present(kind: Kind, fld: str) -> bool:
        return any(normalise_header(n) in norm for n in aliases.for_kind(kind)[fld])

    # People first: a people header also holds a region code column and might look like a
    # (very wide) regions header.
    if all(present("people", f) for f in ("name", "phone", "role")) and (
        present("people", "region_code") or present("people", "place")
    ):
        return "people"
    # A device sheet also holds a region code column: decide it before regions.
    if present("speakers", "device_id") and (present("speakers", "region_code") or present("speakers", "place")):
        return "speakers"
    if present("regions", "code") and present("regions", "name"):
        return "regions"
    return None


def recognise(sheet: str, rows: Iterable[list[str]], aliases: HeaderAliases) -> Table | None:
    """Find the first row that is a header; the rows below it are the data."""
    table: Table | None = None
    for number, cells in enumerate(rows, start=1):
        if table is None:
            kind = _header_kind(cells, aliases)
            if kind is not None:
                columns, ignored = _match_header(
                    cells, aliases.for_kind(kind), f"sheet {sheet!r} row {number}"
                )
                table = Table(sheet, kind, number, columns, ignored)
            continue
        if any(cells):  # blank rows (spacers, Excel's formatted-but-empty tail) carry nothing
            table.rows.append((number, cells))
    return table


def cell_text(value: Any) -> str:
    """A cell as the operator sees it. Excel stores phone numbers and codes typed without a
    leading apostrophe as numbers: 13800000000 comes back as int or float 13800000000.0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return unicodedata.normalize("NFKC", str(value)).strip()


def decode_csv(data: bytes, where: str) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM (Excel's "Unicode text"), else GB18030 —
    the superset of GBK that Excel on Chinese Windows writes for "CSV"."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as e:
        raise RosterError(f"{where}: not UTF-8 and not GB18030/GBK text (byte {e.start})") from e


def _sniff_delimiter(text: str) -> str:
    head = text.splitlines()[:30]
    counts = {d: sum(line.count(d) for line in head) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv_rows(data: bytes, where: str) -> list[list[str]]:
    text = decode_csv(data, where)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    try:
        # One record is one spreadsheet row, even when a quoted cell spans lines.
        return [[cell_text(c) for c in rec] for rec in reader]
    except csv.Error as e:
        raise RosterError(f"{where}: not a readable CSV file: {e}") from e


def _xlsx_sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    import openpyxl  # imported lazily: only XLSX imports pay for it

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for a damaged file
        raise RosterError(f"{path}: cannot open as XLSX: {e}") from e
    try:
        out = []
        for ws in wb.worksheets:
            # min_row=1 makes the enumeration index the spreadsheet row number.
            rows = [[cell_text(v) for v in r] for r in ws.iter_rows(min_row=1, values_only=True)]
            out.append((ws.title, rows))
        return out
    finally:
        wb.close()  # read-only workbooks keep the file open until closed


def read_roster_file(path: Path, aliases: HeaderAliases) -> ReadResult:
    """Read every recognisable sheet. Format is told by content, not by the file name."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RosterError(f"{path}: {e}") from e
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise RosterError(f"{path}: old Excel .xls format; save it as .xlsx or CSV")
    if data.startswith(b"PK\x03\x04"):
        sheets = _xlsx_sheets(path)
    else:
        sheets = [(path.name, read_csv_rows(data, str(path)))]
    tables: list[Table] = []
    ignored: list[str] = []
    for name, rows in sheets:
        table = recognise(name, rows, aliases)
        if table is None:
            ignored.append(name)
        else:
            tables.append(table)
    if not tables:
        r, p = aliases.regions, aliases.people
        raise RosterError(
            f"{path}: no header row found. A regions sheet needs {r['code'][0]} and {r['name'][0]}; "
            f"a people sheet needs {p['name'][0]}, {p['phone'][0]}, {p['role'][0]} and "
            f"{p['region_code'][0]} or {p['place'][0]} (aliases: roster-headers.toml)"
        )
    return ReadResult(tables, ignored)
