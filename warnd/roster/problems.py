"""What an import says about rows, in Chinese for the county clerk, grouped by reason.

Every problem has a stable `code` (for machines: `warnd roster import --format json`), a
message that is the same for every row with that problem (so rows group under it:
"第5、9、13行：行政区划代码在本县不存在"), and a per-row `detail` (the offending value).
The texts are in TEXTS below, one place to reword them; `{placeholders}` are header labels
from roster-headers.toml and level names, never per-row values.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from warnd.core.domain import Level


class Severity(enum.StrEnum):
    REJECTED = "rejected"  # the row was not imported
    WARNING = "warning"  # imported; something needs a look before a storm
    NOTE = "note"  # imported; what the importer did on its own (merged rows, inferred region)
    SKIPPED = "skipped"  # not a data row (合计, 填表说明): left out on purpose


LEVEL_ZH = {Level.COUNTY: "县", Level.TOWNSHIP: "乡镇", Level.VILLAGE: "村", Level.GROUP: "组"}

TEXTS: dict[str, str] = {
    # --- codes and names (regions, and people's region columns) ---
    "code_missing": "缺少{code}",
    "code_not_digits": "{code}不全是数字",
    "code_length": "{code}位数不对：县6位、乡镇9位、村12位、组15位（村代码加3位组号）",
    "code_000": "{code}以000结尾，不是乡镇、村或组的编号",
    "name_missing": "缺少{name}",
    "level_unknown": "{level}只能填 县、乡镇、村、组",
    "level_mismatch": "{level}与代码位数不符",
    "parent_bad": "{parent}格式不对",
    "parent_mismatch": "{parent}与代码不符：上级代码是本代码去掉最后3位",
    "duplicate_code": "{code}重复，只导入了第一次出现的那一行",
    "parent_missing": "上级区划不存在（数据库和本文件里都没有）：请先导入上级区划",
    "parent_rejected": "上级区划的那一行没有导入",
    "coord_pair": "{lon}和{lat}要一起填",
    "coord_bad": "坐标不是十进制度数（如 110.39、28.45）",
    "coord_outside": "坐标不在中国境内",
    "coord_swapped": "坐标不在中国境内：经度和纬度是否填反了？",
    "wkt_bad": "{wkt}不是有效的 WKT",
    "wkt_type": "{wkt}应为 POLYGON 或 MULTIPOLYGON",
    "wkt_empty": "{wkt}是空的多边形",
    "wkt_invalid": "{wkt}多边形无效（边界自相交等）",
    "wkt_outside": "{wkt}不在中国境内：坐标应为“经度 纬度”（度）",
    # --- people ---
    "phone_missing": "缺少电话：{phone}和{phone2}都是空的",
    "phone_invalid": "{phone}不是有效的手机号或固定电话",
    "phone_no_area_code": "固定电话缺少区号（应写成 0745-1234567）",
    "phone_scientific": "电话被 Excel 显示成了科学计数法，号码已经丢失：请把这一列设为“文本”，重新填写后再导入",
    "phone_several_mobiles": "一格里有两个手机号：如果是两个人，请分两行；同一人的第二个号码请填在“{phone2}”一栏",
    "phone_too_many": "电话号码太多：每人最多一个手机号和一个{phone2}",
    "phone_foreign": "不是中国大陆的电话号码",
    "phone_not_personal": "不是个人电话（400、800、95 开头等服务号码）",
    "phone2_ignored": "{phone2}无法识别，已忽略（手机号已导入）",
    "role_missing": "缺少{role}",
    "role_unknown": "{role}不认识：不在 roles.toml 的职务名称或别名里；一人多职请用“、”隔开",
    "role_level": "{want}级职务不能填在{have}：需要{digits}位{want}代码",
    "region_missing": "缺少所在区划：{region_code}和{place}都是空的",
    "region_unknown": "{region_code}在本县不存在（数据库和本文件里都没有）",
    "region_rejected": "所在区划的那一行没有导入",
    "place_unknown": "找不到这个名称对应的乡镇、村或组",
    "place_ambiguous": "这个名称对应多个区划：请连同上级名称写（如“石门村一组”）或填写{region_code}",
    "key_duplicate": "{key}重复：只导入了第一次出现的那一行",
    "key_too_long": "{key}超过64个字符",
    "active_invalid": "{active}只能填 是/否、在岗/离岗",
    "wecom_invalid": "{wecom}格式不对：只能有字母、数字和 _-@.，最长64位",
    "no_regions": "数据库里还没有行政区划，本文件也没有行政区划表",
    "landline_only": "只有固定电话：短信永远发不到，只能打电话叫应",
    "deputy_not_found": "{deputy}找不到（本文件和数据库里都没有这个编号、电话或姓名），未设替补人",
    "deputy_ambiguous": "{deputy}有同名的几个人，未设替补人：请填编号或电话",
    "deputy_self": "{deputy}是本人，未设替补人",
    "deputy_rejected": "{deputy}所在的那一行没有导入，未设替补人",
    "same_person_merged": "同一人（姓名、电话、所在区划都相同）出现在多行，已合并为一人多职",
    "county_inferred": "县级职务所填的单位不是乡镇或村的名称，按本县导入",
    # --- rows that are not data ---
    "summary_row": "合计、小计、说明、备注等行，已跳过",
    "section_row": "分组标题行，已跳过",
    "header_repeat": "重复的表头行，已跳过",
    "number_only_row": "只有序号、没有内容的行，已跳过",
    # --- loudspeakers ---
    "device_missing": "缺少{device_id}",
    "device_bad": "{device_id}只能有字母、数字、_ 和 -，最长64位（它也是喇叭的 MQTT 客户端 ID）",
    "speaker_level": "喇叭只能属于村（12位代码）或组（15位），不能属于{have}",
    "capability_unknown": "{capabilities}只能填 TTS/文本转语音、音频",
    "duplicate_device": "{device_id}重复，只导入了第一次出现的那一行",
}


@dataclass(frozen=True)
class Problem:
    code: str
    message: str  # the same for every row with this problem: the grouping key
    detail: str = ""  # this row's value


def problem(code: str, detail: object = "", /, **labels: str) -> Problem:
    return Problem(code, TEXTS[code].format(**labels), str(detail))


class CellError(ValueError):
    """A cell that cannot be used; the importer attaches the row."""

    def __init__(self, p: Problem):
        super().__init__(f"{p.message}（{p.detail}）" if p.detail else p.message)
        self.problem = p


@dataclass(frozen=True)
class RowNote:
    """One problem at one spreadsheet row (1-based, as Excel numbers them)."""

    severity: Severity
    kind: str  # regions | people | speakers
    sheet: str
    row: int
    problem: Problem


@dataclass(frozen=True)
class Group:
    """Rows sharing one problem, for people to read at once."""

    severity: Severity
    kind: str
    sheet: str
    code: str
    message: str
    rows: tuple[int, ...]
    details: tuple[str, ...]  # distinct details in row order

    def text(self, with_sheet: bool = False, max_details: int = 6) -> str:
        where = f"「{self.sheet}」表 " if with_sheet else ""
        line = f"{where}{row_list(self.rows)}：{self.message}"
        if self.details:
            shown = "、".join(self.details[:max_details])
            more = f" 等{len(self.details)}项" if len(self.details) > max_details else ""
            line += f"（{shown}{more}）"
        return line


def group_notes(notes: Iterable[RowNote], sheet_order: Sequence[str] = ()) -> list[Group]:
    """Groups in the order of each group's first row; sheets in file order."""
    order = {s: i for i, s in enumerate(sheet_order)}
    keyed: dict[tuple[Severity, str, str, str, str], list[RowNote]] = {}
    for n in notes:
        keyed.setdefault((n.severity, n.kind, n.sheet, n.problem.code, n.problem.message), []).append(n)
    groups = []
    for (sev, kind, sheet, code, message), items in keyed.items():
        items.sort(key=lambda n: n.row)
        rows = tuple(dict.fromkeys(n.row for n in items))
        details = tuple(dict.fromkeys(n.problem.detail for n in items if n.problem.detail))
        groups.append(Group(sev, kind, sheet, code, message, rows, details))
    groups.sort(key=lambda g: (order.get(g.sheet, len(order)), g.rows[0], g.code))
    return groups


def row_list(rows: Sequence[int]) -> str:
    """第5、9、13行; runs of three or more as 第5至8行."""
    parts: list[str] = []
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{rows[i]}至{rows[j]}")
        else:
            parts.extend(str(r) for r in rows[i : j + 1])
        i = j + 1
    return f"第{'、'.join(parts)}行"
