"""Parsing one roster cell into a stored value. Each parser raises CellError with a reason the
duty-room operator can act on; the importer attaches the row number."""

from __future__ import annotations

import re
import unicodedata

import shapely
import shapely.wkt
from shapely.errors import ShapelyError
from shapely.validation import explain_validity

from warnd.core.domain import Level


class CellError(ValueError):
    pass


_LEVEL_BY_LENGTH = {lv.code_length: lv for lv in Level}


def normalise_code(text: str) -> str:
    """A region code in our convention: 6 county, 9 township, 12 village, 15 group digits.

    The national statistical code (统计用区划代码) pads every level to 12 digits with zeros
    (430999000000 is the county, 430999100000 a township); those are shortened here. No real
    township, village or group number is 000, so the shortening is unambiguous.
    """
    t = re.sub(r"\s+", "", text)
    if not t.isascii() or not t.isdigit():
        raise CellError(f"region code {text!r} is not all digits")
    if len(t) == 12 and t.endswith("000"):
        t = t[:6] if t.endswith("000000") else t[:9]
    if len(t) not in _LEVEL_BY_LENGTH:
        raise CellError(
            f"region code {text!r} has {len(t)} digits; expected 6 (county), 9 (township), "
            "12 (village) or 15 (group = village code + 3 digits)"
        )
    if len(t) > 6 and t.endswith("000"):
        raise CellError(
            f"region code {text!r} ends in 000, which is no township, village or group number"
        )
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


def parse_level(text: str) -> Level:
    t = re.sub(r"\s+", "", text).casefold()
    lv = _LEVEL_WORDS.get(t)
    if lv is None:
        raise CellError(
            f"level {text!r} is not one of county/township/village/group (县/乡镇/村/组)"
        )
    return lv


_PHONE_NOISE = re.compile(r"[\s\-()（）.·—_]+")
_MOBILE = re.compile(r"1[3-9]\d{9}")
# 0 + area code (10, 2x, or three digits 3xx–9xx) + a 7- or 8-digit local number.
_LANDLINE = re.compile(r"0(?:10|2\d|[3-9]\d{2})\d{7,8}")


def normalise_phone(text: str) -> str:
    """Mainland mobile or landline → E.164 (+8613800000000, +867451234567)."""
    raw = unicodedata.normalize("NFKC", text).strip()  # full-width digits and dashes
    if not raw:
        raise CellError("phone is empty")
    if re.fullmatch(r"\d(\.\d+)?[eE]\+?\d+", raw):
        # Excel shows an over-wide number as 1.38E+10 and a CSV export keeps only that.
        raise CellError(
            f"phone {raw!r} is in Excel scientific notation, its digits are lost; format the column as text and export again"
        )
    if len(re.findall(r"1[3-9]\d{9}|0\d{2,3}[\-\s]?\d{7,8}", raw)) > 1:
        raise CellError(
            f"phone {raw!r} holds several numbers; one number per cell (a second person is a row of its own)"
        )
    t = _PHONE_NOISE.sub("", raw)
    country_code = True
    if t.startswith("+86"):
        t = t[3:]
    elif t.startswith("0086"):
        t = t[4:]
    elif t.startswith("86") and len(t) == 13:
        t = t[2:]
    elif t.startswith("+"):
        raise CellError(f"phone {raw!r} is not a mainland China number")
    else:
        country_code = False
    if country_code and t[:1] in tuple("23456789"):
        t = "0" + t  # +86 745 1234567: the trunk 0 is dropped after the country code
    if _MOBILE.fullmatch(t):
        return "+86" + t
    if _LANDLINE.fullmatch(t):
        return "+86" + t[1:]
    raise CellError(
        f"phone {raw!r} is not a valid mainland mobile (11 digits, 1[3-9]…) or landline with area code (0745-1234567)"
    )


_TRUE = {"是", "在岗", "在职", "正常", "启用", "有效", "y", "yes", "true", "1", "√", "✓"}
_FALSE = {"否", "不在岗", "离岗", "离职", "停用", "调离", "无效", "n", "no", "false", "0", "×", "✗"}


def parse_active(text: str) -> bool:
    t = re.sub(r"\s+", "", text).casefold()
    if not t:
        return True  # an empty cell in a listed row: listed means on duty
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise CellError(f"在岗 value {text!r} is not one of 是/否, 在岗/离岗, yes/no")


# Mainland China plus a margin: catches swapped longitude/latitude and degrees-minutes typos.
LON_RANGE = (73.0, 136.0)
LAT_RANGE = (3.0, 54.0)


def _in_china(lon: float, lat: float) -> bool:
    return LON_RANGE[0] <= lon <= LON_RANGE[1] and LAT_RANGE[0] <= lat <= LAT_RANGE[1]


def parse_point(lon_text: str, lat_text: str) -> str | None:
    if not lon_text and not lat_text:
        return None
    if not lon_text or not lat_text:
        raise CellError("经度 and 纬度 must be given together")
    try:
        lon, lat = float(lon_text), float(lat_text)
    except ValueError as e:
        raise CellError(
            f"coordinates {lon_text!r}, {lat_text!r} are not decimal degrees (e.g. 110.39, 28.45)"
        ) from e
    if not _in_china(lon, lat):
        hint = " (longitude and latitude swapped?)" if _in_china(lat, lon) else ""
        raise CellError(f"point {lon}, {lat} is outside China{hint}")
    return str(shapely.to_wkt(shapely.Point(lon, lat), rounding_precision=-1))


def parse_polygon(text: str) -> str | None:
    """Boundary as POLYGON or MULTIPOLYGON WKT in lon/lat (WGS84); stored normalised."""
    if not text:
        return None
    try:
        geom = shapely.wkt.loads(text)
    except (ShapelyError, ValueError) as e:
        raise CellError(f"边界WKT is not valid WKT: {e}") from e
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise CellError(f"边界WKT is a {geom.geom_type}; a POLYGON or MULTIPOLYGON is expected")
    if geom.is_empty:
        raise CellError("边界WKT is empty")
    if not geom.is_valid:
        raise CellError(f"边界WKT polygon is invalid: {explain_validity(geom)}")
    minx, miny, maxx, maxy = geom.bounds
    if not (_in_china(minx, miny) and _in_china(maxx, maxy)):
        raise CellError(
            "边界WKT lies outside China; coordinates must be longitude latitude in degrees"
        )
    return str(shapely.to_wkt(geom, rounding_precision=-1))
