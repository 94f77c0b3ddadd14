"""Reading public recipient lists: CSV (UTF-8 with or without BOM, GB18030/GBK) and XLSX, with
the Chinese headers counties use (手机号码, 所属村, 名单类型, 来源, 同意日期, 转移地点 …), title rows
above the header allowed. Pure parsing of one row into a `ListRow` or Chinese reasons why not;
nothing here touches the database (warnd.public.importer applies what this returns).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from warnd.core.phones import PhoneError, parse_phone

# list kind → Chinese label (shown in reports); aliases a sheet may use for each.
KINDS: dict[str, str] = {
    "danger_zone": "危险区群众",
    "grid": "网格员",
    "subscriber": "扫码订阅",
    "visitor": "游客",
    "worker": "施工人员",
}
KIND_ALIASES: dict[str, str] = {
    "危险区群众": "danger_zone", "危险区": "danger_zone", "危险区域群众": "danger_zone", "山洪危险区": "danger_zone",
    "地灾隐患点": "danger_zone", "地质灾害隐患点": "danger_zone", "隐患点群众": "danger_zone", "转移对象": "danger_zone",
    "网格员": "grid", "网格": "grid",
    "扫码订阅": "subscriber", "订阅": "subscriber", "订阅用户": "subscriber", "自愿订阅": "subscriber",
    "游客": "visitor", "景区游客": "visitor",
    "施工人员": "worker", "务工人员": "worker", "工地人员": "worker", "施工工地": "worker",
}
KIND_ALIASES.update({k: k for k in KINDS})

HEADERS: dict[str, tuple[str, ...]] = {
    "phone": ("手机号码", "手机号", "手机", "电话号码", "联系电话", "联系方式", "电话", "phone", "mobile"),
    "name": ("姓名", "户主姓名", "户主", "名字", "name"),
    "region_code": ("行政区划代码", "区划代码", "村组代码", "村代码", "region_code"),
    "township": ("乡镇", "乡镇(街道)", "乡镇街道", "所属乡镇", "township"),
    "village": ("村", "村(社区)", "所属村", "所在村", "村名", "行政村", "村社区", "village"),
    "group": ("组", "村民小组", "小组", "所属组", "group"),
    "kind": ("名单类型", "类型", "人员类别", "类别", "名单类别", "kind"),
    "source": ("来源", "信息来源", "数据来源", "source"),
    "consent_date": ("同意日期", "授权日期", "订阅日期", "同意时间", "授权时间", "consent_date"),
    "shelter": ("转移地点", "安置点", "避险点", "避险场所", "转移安置点", "shelter"),
}
_ALIAS = {a: f for f, names in HEADERS.items() for a in names}
_MOBILE = re.compile(r"1[3-9]\d{9}")
_HEADER_SCAN_ROWS = 10


class ListError(Exception):
    """The file as a whole cannot be used (a Chinese message)."""


def norm_header(text: str) -> str:
    t = unicodedata.normalize("NFKC", text or "").strip().lower()
    return re.sub(r"\s+", "", t).replace("*", "")


@dataclass(frozen=True)
class Sheet:
    name: str
    header_row: int  # 1-based
    columns: dict[str, int]  # field → column index
    rows: list[tuple[int, list[str]]]  # (spreadsheet row number, cells)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _find_header(rows: list[list[str]]) -> tuple[int, dict[str, int]] | None:
    for i, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        cols: dict[str, int] = {}
        for j, h in enumerate(row):
            f = _ALIAS.get(norm_header(h))
            if f is not None and f not in cols:
                cols[f] = j
        if "phone" in cols:
            return i, cols
    return None


def _decode(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ListError("文件编码无法识别：请另存为 UTF-8 或 GBK 编码的 CSV，或 Excel（.xlsx）文件")


def read_list(path: Path) -> list[Sheet]:
    """Every sheet of the file that has a phone column. Raises ListError when none has."""
    suffix = path.suffix.lower()
    raw: list[tuple[str, Iterator[list[str]]]] = []
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as e:
            raise ListError(f"无法打开 Excel 文件：{e}") from None
        for ws in wb.worksheets:
            raw.append((ws.title, ([_cell(v) for v in r] for r in ws.iter_rows(values_only=True))))
    elif suffix in (".csv", ".txt"):
        text = _decode(path.read_bytes())
        raw.append((path.stem, ([c.strip() for c in r] for r in csv.reader(io.StringIO(text)))))
    else:
        raise ListError(f"不支持的文件类型“{path.suffix}”：请使用 CSV 或 Excel（.xlsx）文件")
    sheets: list[Sheet] = []
    for name, it in raw:
        head: list[list[str]] = []
        for r in it:
            head.append(r)
            if len(head) >= _HEADER_SCAN_ROWS:
                break
        found = _find_header(head)
        if found is None:
            continue
        at, cols = found
        rows = [(i + 1, r) for i, r in enumerate(head) if i > at]
        rows += [(len(head) + i + 1, r) for i, r in enumerate(it)]
        sheets.append(Sheet(name, at + 1, cols, [(n, r) for n, r in rows if any(c for c in r)]))
    if not sheets:
        raise ListError("找不到表头：名单需要一列“手机号码”（也可写作 手机号、联系电话），以及所属村（或行政区划代码）")
    return sheets


@dataclass(frozen=True)
class ListRow:
    sheet: str
    row: int
    phone: str
    name: str
    region_code: str
    kind: str
    source: str
    consent_date: str | None
    shelter: str


@dataclass(frozen=True)
class Place:
    """How a row's village/group is found: by code, or by the names of township/village/group."""

    codes: dict[str, str]  # code → level of every known village and group
    by_names: Callable[[str, str, str], list[str]]  # (township, village, group) → candidate codes


def parse_phone_cell(text: str) -> tuple[str | None, str | None]:
    """(E.164 mobile, None) or (None, a Chinese reason)."""
    digits = re.sub(r"[\s\-]", "", text)
    if _MOBILE.fullmatch(digits):  # the common case, without the full parser
        return "+86" + digits, None
    try:
        p = parse_phone(text)
    except PhoneError as e:
        reason = {"empty": "手机号码为空", "scientific": "手机号码被 Excel 显示成了科学计数法（请把该列设为文本）",
                  "foreign": "不是中国大陆号码"}.get(e.code, f"手机号码无效（{text}）")
        return None, reason
    if not p.mobile:
        return None, f"不是手机号码（{text} 是固定电话，收不到短信）"
    return p.e164, None


def parse_date(text: str) -> tuple[str | None, bool]:
    """An ISO date from 2026-05-01, 2026/5/1, 2026.5.1, 2026年5月1日, 20260501; (None, ok)."""
    t = unicodedata.normalize("NFKC", text).strip()
    if not t:
        return None, True
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T].*)?", t) or re.fullmatch(
        r"(\d{4})(\d{2})(\d{2})", t)
    if not m:
        return None, False
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat(), True
    except ValueError:
        return None, False


def parse_row(sheet: Sheet, number: int, cells: list[str], place: Place, default_kind: str,
              default_source: str) -> tuple[ListRow | None, list[str]]:
    """One data row → a ListRow, or the Chinese reasons it is rejected (all of them)."""

    def get(f: str) -> str:
        j = sheet.columns.get(f)
        return cells[j].strip() if j is not None and j < len(cells) else ""

    reasons: list[str] = []
    phone, why = parse_phone_cell(get("phone"))
    if why:
        reasons.append(why)
    kind_text = norm_header(get("kind"))
    kind = KIND_ALIASES.get(kind_text) if kind_text else default_kind
    if kind is None:
        reasons.append(f"名单类型“{get('kind')}”无法识别（可用：{'、'.join(KINDS.values())}）")
    consent, ok = parse_date(get("consent_date"))
    if not ok:
        reasons.append(f"同意日期“{get('consent_date')}”无法识别（例：2026-05-01）")
    region: str | None = None
    code = re.sub(r"\s", "", get("region_code"))
    if code:
        level = place.codes.get(code)
        if level is None:
            reasons.append(f"行政区划代码 {code} 不是已导入的村或组")
        else:
            region = code
    else:
        township, village, group = get("township"), get("village"), get("group")
        if not village:
            reasons.append("缺少所属村（或行政区划代码）")
        else:
            found = place.by_names(township, village, group)
            label = "".join(x for x in (township, village, group) if x)
            if not found:
                reasons.append(f"找不到“{label}”：请先导入行政区划，或填写行政区划代码")
            elif len(found) > 1:
                reasons.append(f"“{label}”对应多个村组，请填写乡镇或行政区划代码")
            else:
                region = found[0]
    if reasons or phone is None or region is None or kind is None:
        return None, reasons
    return ListRow(sheet.name, number, phone, get("name"), region, kind, get("source") or default_source,
                   consent, get("shelter")), []
