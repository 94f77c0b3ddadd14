"""Reading roster files: CSV (UTF-8, UTF-8 with BOM, UTF-16, GB18030/GBK) and XLSX, header
recognition through configurable aliases, cells as plain strings.

Sheets as counties keep them: title rows above the header (merged across the sheet), a header
split over two rows (联系方式 over 手机号码 | 联系电话), a township cell merged down over all
its villages, trailing 合计/填表说明 rows, section rows (二、白水乡), pre-numbered empty rows.
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
KIND_ZH: dict[str, str] = {"regions": "行政区划", "people": "责任人", "speakers": "应急广播"}

REGION_FIELDS = ("code", "name", "parent", "level", "lon", "lat", "wkt")
PEOPLE_FIELDS = (
    "key",
    "name",
    "phone",
    "phone2",
    "role",
    "region_code",
    "township",
    "place",
    "group",
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

# Words that make an unrecognised header look like a field: such a column is reported (it
# may be data the county expects to be imported), not dropped silently. Compared with the
# normalised header (no spaces, lower case).
LOOKS_LIKE: dict[str, dict[str, tuple[str, ...]]] = {
    "people": {
        "key": ("编号", "工号"),
        "name": ("姓名", "名字"),
        "phone": ("手机",),
        "phone2": ("电话", "座机", "固话"),
        "role": ("职务", "岗位", "职责"),
        "region_code": ("代码", "编码"),
        "township": ("乡镇", "街道"),
        "place": ("所属村", "所在村", "村组", "村名", "社区"),
        "group": ("小组", "组名", "所属组"),
        "deputy": ("替补", "ab角", "ab岗", "b角", "b岗", "顶岗"),
        "wecom": ("企业微信", "企微", "微信"),
        "active": ("在岗", "状态"),
    },
    "regions": {
        "code": ("代码", "编码"),
        "name": ("名称",),
        "parent": ("上级",),
        "level": ("级别", "层级"),
        "lon": ("经度",),
        "lat": ("纬度",),
        "wkt": ("边界", "范围"),
    },
    "speakers": {
        "device_id": ("设备", "终端", "喇叭"),
        "region_code": ("代码", "编码"),
        "place": ("村组", "位置"),
        "capabilities": ("能力", "功能"),
        "active": ("启用", "在用", "状态"),
    },
}

# A row whose first non-empty cell starts with one of these is not data (a total, a note,
# the signature line under the table).
SUMMARY_MARKERS = ("合计", "小计", "总计", "共计", "填表说明", "说明", "备注", "注：", "注:", "注意",
                   "填表人", "填报人", "制表人", "审核人", "负责人签字", "填表日期", "填报日期", "填报单位")
_SECTION = re.compile(r"([一二三四五六七八九十]+[、.．]|[（(][一二三四五六七八九十]+[)）]|第[一二三四五六七八九十]+[部分组片]).*")
_NUMBER = re.compile(r"\d+(\.0)?")
# Cells that say "nothing here" in county sheets.
BLANKS = frozenset({"/", "-", "—", "——", "－", "\\", "无", "暂无", "空", "n/a", "na", "none", "null"})


class RosterError(ValueError):
    """The file as a whole cannot be imported (unreadable, no recognisable header, bad config).
    The message is for people (Chinese)."""


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
    for kind, required in (("regions", ("code", "name")), ("people", ("name", "role"))):
        for fld in required:
            if not raw[kind].get(fld):
                raise RosterError(f"{path}: [{kind}].{fld} needs at least one header text")
    if not raw["people"].get("phone") and not raw["people"].get("phone2"):
        raise RosterError(f"{path}: [people].phone or [people].phone2 needs at least one header text")
    return HeaderAliases(regions=tables["regions"], people=tables["people"], speakers=tables["speakers"])


_BRACKET_NOTE = re.compile(r"[（(【\[][^（）()【】\[\]]*[)）】\]]$")


def normalise_header(text: str) -> str:
    """Header comparison key: NFKC, no whitespace, no '*' markers, no trailing bracketed note."""
    t = unicodedata.normalize("NFKC", text)
    t = re.sub(r"\s+", "", t).strip("*")
    stripped = _BRACKET_NOTE.sub("", t)
    return (stripped or t).strip("*").casefold()


def _marked_required(text: str) -> bool:
    t = unicodedata.normalize("NFKC", text).strip()
    return t.startswith("*") or t.endswith("*") or "必填" in t


@dataclass(frozen=True)
class ColumnNote:
    """An unrecognised column that looks like it was meant to be imported."""

    header: str
    column: int  # 1-based
    looks_like: str | None  # the field's canonical header, when it resembles one
    taken_by: str | None  # the header of the column already used for that field

    @property
    def message(self) -> str:
        col = f"第{self.column}列「{self.header}」"
        if self.looks_like and self.taken_by:
            return f"{col}看起来也是“{self.looks_like}”，但已使用「{self.taken_by}」列，这一列没有导入"
        if self.looks_like:
            return (f"{col}看起来是“{self.looks_like}”，但没有识别，这一列没有导入："
                    f"请在 roster-headers.toml 里把它加为别名，或改用“{self.looks_like}”作表头")
        return f"{col}标着必填，但没有识别，这一列没有导入：请检查表头或 roster-headers.toml"


@dataclass(frozen=True)
class SkippedRow:
    row: int
    code: str  # summary_row | section_row | header_repeat | number_only_row
    text: str


@dataclass
class Table:
    """One recognised sheet: its kind, header position and data rows (1-based row numbers)."""

    sheet: str
    kind: Kind
    header_row: int  # the (last) header row
    columns: dict[str, int]  # field → column index
    ignored_columns: list[str]
    column_notes: list[ColumnNote] = field(default_factory=list)
    header_rows: int = 1  # 2: a header split over two rows
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)

    def has(self, fld: str) -> bool:
        return fld in self.columns

    def cell(self, cells: Sequence[str], fld: str) -> str:
        """The cell's text; "/", "无", "—" and the like count as empty."""
        i = self.columns.get(fld)
        if i is None or i >= len(cells):
            return ""
        text = cells[i]
        return "" if text.casefold() in BLANKS else text


@dataclass
class ReadResult:
    tables: list[Table]
    ignored_sheets: list[str]


def _lookup(aliases: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for fld, names in aliases.items():
        for rank, n in enumerate(names):
            out.setdefault(normalise_header(n), (fld, rank))
    return out


def _match_header(
    cells: Sequence[str], aliases: dict[str, tuple[str, ...]], where: str | None
) -> tuple[dict[str, int], list[str]]:
    """field → column. When two columns mean one field, the one whose header comes first in
    the alias list wins and the other is ignored; two identical headers are ambiguous (an
    error when `where` is given, else the first is kept)."""
    lookup = _lookup(aliases)
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
            if where is not None:
                raise RosterError(f"{where}：第{prev[1] + 1}列和第{i + 1}列的表头都是「{c}」，无法确定用哪一列")
            ignored.append(c)
            continue
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
        return any(normalise_header(n) in norm for n in aliases.for_kind(kind).get(fld, ()))

    # People first: a people header also holds a region code column and might look like a
    # (very wide) regions header. A county-level list may have no region column at all.
    if present("people", "name") and present("people", "role") and (
        present("people", "phone") or present("people", "phone2")
    ):
        return "people"
    # A device sheet also holds a region code column: decide it before regions.
    if present("speakers", "device_id") and (present("speakers", "region_code") or present("speakers", "place")):
        return "speakers"
    if present("regions", "code") and present("regions", "name"):
        return "regions"
    return None


def _stacked(upper: Sequence[str], lower: Sequence[str]) -> list[str]:
    """A header over two rows: the lower row's text where it has one, else the upper's."""
    width = max(len(upper), len(lower))
    return [
        (lower[i] if i < len(lower) and lower[i] else (upper[i] if i < len(upper) else ""))
        for i in range(width)
    ]


def _column_notes(kind: Kind, cells: Sequence[str], columns: dict[str, int],
                  aliases: HeaderAliases) -> list[ColumnNote]:
    used = set(columns.values())
    words = LOOKS_LIKE.get(kind, {})
    notes = []
    for i, c in enumerate(cells):
        if not c or i in used:
            continue
        norm = normalise_header(c)
        looks = next((f for f, ws in words.items() if any(w in norm for w in ws)), None)
        if looks is None and not _marked_required(c):
            continue
        taken = cells[columns[looks]] if looks is not None and looks in columns else None
        notes.append(ColumnNote(c, i + 1, aliases.label(kind, looks) if looks else None, taken))
    return notes


def _head(text: str, n: int = 12) -> str:
    t = re.sub(r"\s+", " ", text).strip()
    return t if len(t) <= n else t[:n] + "…"


def _non_data(cells: Sequence[str], table: Table, header_norm: list[str]) -> SkippedRow | None:
    filled = [(i, c) for i, c in enumerate(cells) if c]
    if not filled:
        return None
    first = re.sub(r"\s+", "", filled[0][1])
    if first.startswith(SUMMARY_MARKERS):
        return SkippedRow(0, "summary_row", _head(filled[0][1]))
    if [normalise_header(c) for c in cells if c] == [h for h in header_norm if h]:
        return SkippedRow(0, "header_repeat", "")
    used = set(table.columns.values())
    if len({c for _, c in filled}) == 1 and _SECTION.fullmatch(first):
        return SkippedRow(0, "section_row", _head(filled[0][1]))
    # Only a number in a column nobody imports (序号): a pre-numbered empty row.
    if all(i not in used for i, _ in filled) and all(_NUMBER.fullmatch(c) for _, c in filled):
        return SkippedRow(0, "number_only_row", "")
    return None


def recognise(sheet: str, rows: Iterable[list[str]], aliases: HeaderAliases) -> Table | None:
    """Find the first row that is a header; the rows below it are the data."""
    table: Table | None = None
    header_cells: list[str] = []
    for number, cells in enumerate(rows, start=1):
        if table is None:
            kind = _header_kind(cells, aliases)
            if kind is not None:
                where = f"「{sheet}」表第{number}行"
                columns, ignored = _match_header(cells, aliases.for_kind(kind), where)
                table = Table(sheet, kind, number, columns, ignored)
                header_cells = list(cells)
            continue
        # The row right under the header may be its second half (联系方式 over 手机号码 | 联系电话).
        if table.header_rows == 1 and number == table.header_row + 1:
            stacked = _stacked(header_cells, cells)
            kind2 = _header_kind(stacked, aliases)
            if kind2 == table.kind:
                cols2, ign2 = _match_header(stacked, aliases.for_kind(kind2), None)
                if len(cols2) > len(table.columns):
                    where = f"「{sheet}」表第{table.header_row}至{number}行"
                    cols2, ign2 = _match_header(stacked, aliases.for_kind(kind2), where)
                    table.columns, table.ignored_columns = cols2, ign2
                    table.header_row, table.header_rows = number, 2
                    header_cells = stacked
                    continue
        if not any(cells):  # blank rows (spacers, Excel's formatted-but-empty tail) carry nothing
            continue
        skip = _non_data(cells, table, [normalise_header(c) for c in header_cells])
        if skip is not None:
            table.skipped.append(SkippedRow(number, skip.code, skip.text))
            continue
        table.rows.append((number, cells))
    if table is not None:
        table.column_notes = _column_notes(table.kind, header_cells, table.columns, aliases)
        table.ignored_columns = [c for c in table.ignored_columns
                                 if c not in {n.header for n in table.column_notes}]
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
        raise RosterError(f"{where}：既不是 UTF-8 也不是 GB18030/GBK 文本（第{e.start}字节）") from e


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
        raise RosterError(f"{where}：不是可读的 CSV 文件：{e}") from e


def _xlsx_sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    import openpyxl  # imported lazily: only XLSX imports pay for it

    try:
        # Not read-only: merged cells are only known to a fully loaded sheet.
        wb = openpyxl.load_workbook(path, data_only=True)
    except Exception as e:  # openpyxl raises many types for a damaged file
        raise RosterError(f"{path}：无法作为 XLSX 打开：{e}") from e
    try:
        out = []
        for ws in wb.worksheets:
            rows = [[cell_text(v) for v in r] for r in ws.iter_rows(min_row=1, values_only=True)]
            # A cell merged down over several rows (a township over all its villages) holds
            # its value in the first row only: every row of the range means it.
            for rng in ws.merged_cells.ranges:
                value = rows[rng.min_row - 1][rng.min_col - 1] if rng.min_row <= len(rows) else ""
                for r in range(rng.min_row + 1, min(rng.max_row, len(rows)) + 1):
                    rows[r - 1][rng.min_col - 1] = value
            out.append((ws.title, rows))
        return out
    finally:
        wb.close()


def read_roster_file(path: Path, aliases: HeaderAliases) -> ReadResult:
    """Read every recognisable sheet. Format is told by content, not by the file name."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RosterError(f"{path}：无法读取：{e.strerror or e}") from e
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise RosterError(f"{path}：这是旧的 Excel .xls 格式，请另存为 .xlsx 或 CSV 后再导入")
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
            f"{path}：没有找到表头行。行政区划表需要“{r['code'][0]}”和“{r['name'][0]}”两列；"
            f"责任人表需要“{p['name'][0]}”“{p['role'][0]}”和“{p['phone'][0]}”（或“{p['phone2'][0]}”）；"
            "表头的其他写法可加在 roster-headers.toml 里"
        )
    return ReadResult(tables, ignored)
