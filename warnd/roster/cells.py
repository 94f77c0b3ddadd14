"""Parsing one roster cell into a stored value. Each parser raises CellError with a Problem the
county clerk can act on (warnd.roster.problems); the importer attaches the row number.
`label` arguments are the sheet's header words for the field, used in the message."""

from __future__ import annotations

import re

import shapely
import shapely.wkt
from shapely.errors import ShapelyError
from shapely.validation import explain_validity

from warnd.core.domain import Level
from warnd.core.phones import Phone, PhoneError, parse_phones
from warnd.roster.problems import CellError, problem

__all__ = ["CellError", "Phone"]


_LEVEL_BY_LENGTH = {lv.code_length: lv for lv in Level}


def normalise_code(text: str, label: str = "行政区划代码") -> str:
    """A region code in our convention: 6 county, 9 township, 12 village, 15 group digits.

    The national statistical code (统计用区划代码) pads every level to 12 digits with zeros
    (430999000000 is the county, 430999100000 a township); those are shortened here. No real
    township, village or group number is 000, so the shortening is unambiguous.
    """
    t = re.sub(r"\s+", "", text)
    if not t.isascii() or not t.isdigit():
        raise CellError(problem("code_not_digits", text, code=label))
    if len(t) == 12 and t.endswith("000"):
        t = t[:6] if t.endswith("000000") else t[:9]
    if len(t) not in _LEVEL_BY_LENGTH:
        raise CellError(problem("code_length", f"{text}：{len(t)}位", code=label))
    if len(t) > 6 and t.endswith("000"):
        raise CellError(problem("code_000", text, code=label))
    return t


def level_of(code: str) -> Level:
    return _LEVEL_BY_LENGTH[len(code)]


def parent_of(code: str) -> str | None:
    """Every level below the county adds three digits to its parent's code."""
    return code[:-3] if len(code) > 6 else None


_LEVEL_WORDS: dict[str, Level] = {}
for _lv, _words in {
    Level.COUNTY: ("县", "区", "县级", "县区", "县(区)", "县(市、区)", "县级市", "市"),
    Level.TOWNSHIP: ("乡", "镇", "乡镇", "街道", "乡级", "乡镇(街道)", "乡镇街道", "乡(镇)"),
    Level.VILLAGE: ("村", "社区", "村级", "行政村", "村(社区)", "村委会", "居委会"),
    Level.GROUP: ("组", "村民小组", "小组", "村民组", "组级", "自然村"),
}.items():
    _LEVEL_WORDS[_lv.value] = _lv
    for _w in _words:
        _LEVEL_WORDS[_w] = _lv


def parse_level(text: str, label: str = "级别") -> Level:
    t = re.sub(r"\s+", "", text).casefold()
    lv = _LEVEL_WORDS.get(t)
    if lv is None:
        raise CellError(problem("level_unknown", text, level=label))
    return lv


_PHONE_CODES = {"scientific": "phone_scientific", "no_area_code": "phone_no_area_code",
                "several_mobiles": "phone_several_mobiles", "too_many": "phone_too_many",
                "foreign": "phone_foreign", "not_personal": "phone_not_personal"}


def parse_phone_cell(text: str, phone_label: str = "手机号码", phone2_label: str = "联系电话") -> list[Phone]:
    """Every number in a phone cell (none, one, or a mobile and a landline)."""
    try:
        return parse_phones(text)
    except PhoneError as e:
        code = _PHONE_CODES.get(e.code, "phone_invalid")
        raise CellError(problem(code, e.text, phone=phone_label, phone2=phone2_label)) from None


_TRUE = {"是", "在岗", "在职", "正常", "启用", "有效", "y", "yes", "true", "1", "√", "✓"}
_FALSE = {"否", "不在岗", "离岗", "离职", "停用", "调离", "无效", "n", "no", "false", "0", "×", "✗"}


def parse_active(text: str, label: str = "在岗") -> bool:
    t = re.sub(r"\s+", "", text).casefold()
    if not t:
        return True  # an empty cell in a listed row: listed means on duty
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise CellError(problem("active_invalid", text, active=label))


# Mainland China plus a margin: catches swapped longitude/latitude and degrees-minutes typos.
LON_RANGE = (73.0, 136.0)
LAT_RANGE = (3.0, 54.0)


def _in_china(lon: float, lat: float) -> bool:
    return LON_RANGE[0] <= lon <= LON_RANGE[1] and LAT_RANGE[0] <= lat <= LAT_RANGE[1]


def parse_point(lon_text: str, lat_text: str, lon_label: str = "经度", lat_label: str = "纬度") -> str | None:
    if not lon_text and not lat_text:
        return None
    if not lon_text or not lat_text:
        raise CellError(problem("coord_pair", lon=lon_label, lat=lat_label))
    try:
        lon, lat = float(lon_text), float(lat_text)
    except ValueError:
        raise CellError(problem("coord_bad", f"{lon_text}, {lat_text}")) from None
    if not _in_china(lon, lat):
        code = "coord_swapped" if _in_china(lat, lon) else "coord_outside"
        raise CellError(problem(code, f"{lon}, {lat}"))
    return str(shapely.to_wkt(shapely.Point(lon, lat), rounding_precision=-1))


def parse_polygon(text: str, label: str = "边界WKT") -> str | None:
    """Boundary as POLYGON or MULTIPOLYGON WKT in lon/lat (WGS84); stored normalised."""
    if not text:
        return None
    try:
        geom = shapely.wkt.loads(text)
    except (ShapelyError, ValueError) as e:
        raise CellError(problem("wkt_bad", str(e)[:80], wkt=label)) from None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise CellError(problem("wkt_type", geom.geom_type, wkt=label))
    if geom.is_empty:
        raise CellError(problem("wkt_empty", wkt=label))
    if not geom.is_valid:
        raise CellError(problem("wkt_invalid", explain_validity(geom), wkt=label))
    minx, miny, maxx, maxy = geom.bounds
    if not (_in_china(minx, miny) and _in_china(maxx, maxy)):
        raise CellError(problem("wkt_outside", wkt=label))
    return str(shapely.to_wkt(geom, rounding_precision=-1))
