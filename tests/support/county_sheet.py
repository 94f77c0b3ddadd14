"""A county roster as counties really keep it, written with openpyxl.

Regions sheet: a merged title row, 12-digit statistical codes, a trailing 合计 row.
People sheet: two merged title rows, `所属乡镇` merged down over its rows, `所属村` with "/"
for township officials, `联系电话` beside `手机号码`, `替补人/AB角` by name and by phone, 一肩挑
(`村党支部书记、村委会主任`, `村支书/村主任`), a landline-only 值班员, county officials with no
region or their unit (县防指) in 所属乡镇, a section row, a pre-numbered empty row, 合计,
填表说明 and 填表人 rows, a column that looks like a phone (`AB角电话`), a column marked
required that nobody imports (`*身份证号`), rows that must be rejected, a deputy nobody is.

ROWS documents what each people row is, for the tests to assert against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl

REGIONS: list[list[Any]] = [
    ["统计用区划代码", "名称", "级别"],
    [430999000000, "示例县", "县"],
    [430999100000, "青山镇", "镇"],
    [430999200000, "白水乡", "乡"],
    [430999100201, "石门村", "村"],
    [430999100202, "枫树村", "村"],
    [430999200201, "河口村", "村"],
    ["430999100201001", "一组", "组"],
    ["430999100202001", "一组", "组"],
]

PEOPLE_HEADER = ["序号", "所属乡镇", "所属村", "姓名", "职务", "手机号码", "联系电话", "替补人/AB角",
                 "AB角电话", "*身份证号", "备注"]

# Row number on the sheet → (cells). Rows 1-2 are titles, 3 the header.
DUTY_ROWS: dict[int, list[Any]] = {
    6: [3, None, None, "赵敏", "值班员", None, "0745-4221234", "陈静", None, None, "值班室座机"],
    7: [4, None, None, "陈静", "县值班员", "138 0000 0004", None, "赵敏", None, None, None],
}
PEOPLE_ROWS: dict[int, list[Any]] = {
    4: [1, None, None, "李国强", "带班县领导", 13800000001, "0745-4220001", "王建华", None, None, None],
    5: [2, "县防指", None, "王建华", "防指成员", 13800000002, None, "李国强", None, None, None],
    **DUTY_ROWS,
    8: [5, "青山镇", "/", "刘洋", "镇党委书记", 13800000005, "0745-4230001", "孙伟", None, None, None],
    9: [6, None, "/", "孙伟", "镇长", 13800000006, None, "刘洋", None, None, None],
    10: [7, None, "/", "周丽", "乡镇值班员", 13800000007, None, "孙伟", None, None, None],
    11: [8, None, "石门村", "黄志明", "村党支部书记、村委会主任", 13800000010, None, "马红梅",
         13800000011, None, "一肩挑"],
    12: [9, None, "石门村", "马红梅", "网格员", 13800000011, None, 13800000010, None, None, None],
    13: [10, None, "石门村一组", "高山", "组长", 13800000016, None, "黄志明", None, None, None],
    14: ["二、白水乡"],  # section row, merged across
    15: [11, "白水乡", None, "吴刚", "乡党委书记", 13800000008, None, "郑勇", None, None, None],
    16: [12, "白水乡", None, "郑勇", "乡长", 13800000009, None, "查无此人", None, None, None],
    17: [13, "白水乡", "河口村", "何文", "村支书/村主任", 13800000014, None, "罗海", None, None, None],
    18: [14, "白水乡", "河口村", "罗海", "转移责任人", 13800000015, None, "何文", None, None, None],
    19: [15, "白水乡", "桃花村", "钱进", "网格员", 13800000098, None, None, None, None, None],
    20: [16, "白水乡", "桃花村", "孙亮", "组长", 13800000097, None, None, None, None, None],
    21: [17, "白水乡", "河口村", "赵强", "村霸", 13800000096, None, None, None, None, None],
    22: [18],  # pre-numbered, never filled
    23: ["合计", None, None, "共15人"],
    24: ["填表说明：1.职务按防汛职务填写；2.一人多职用顿号隔开；3.替补人即AB角。"],
    25: ["填表人：张三        审核人：李四        联系电话：0745-4220000"],
}
TOWNSHIP_MERGE = "B8:B13"  # 青山镇, merged down over its officials


def county_workbook(path: Path, *, duty_officers: bool = True) -> Path:
    """Write the workbook; without `duty_officers` the county has no 值班员 at all."""
    wb = openpyxl.Workbook()
    rs = wb.active
    assert rs is not None
    rs.title = "行政区划"
    rs.append(["示例县行政区划代码表"])
    rs.merge_cells("A1:C1")
    for r in REGIONS:
        rs.append(r)
    rs.append(["合计：2个乡镇、3个村、2个组"])

    ps = wb.create_sheet("责任人")
    ps.append(["示例县2026年汛期防汛责任人及替补人（AB角）名单"])
    ps.merge_cells("A1:K1")
    ps.append(["填报单位（盖章）：示例县防汛抗旱指挥部办公室            填报日期：2026年5月20日"])
    ps.merge_cells("A2:K2")
    ps.append(PEOPLE_HEADER)
    for number in range(4, max(PEOPLE_ROWS) + 1):
        cells = PEOPLE_ROWS[number]
        if not duty_officers and number in DUTY_ROWS:
            cells = [cells[0]]  # the rows stay (numbering unchanged), the people go
        for col, value in enumerate(cells, start=1):
            ps.cell(row=number, column=col, value=value)
    ps.merge_cells(TOWNSHIP_MERGE)
    for number in (14, 24, 25):
        ps.merge_cells(f"A{number}:K{number}")
    ps.merge_cells("A23:C23")
    wb.create_sheet("说明").append(["本表由各乡镇汇总，县防办审核。"])
    wb.save(path)
    return path
