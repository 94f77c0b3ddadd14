from __future__ import annotations

import math
from pathlib import Path

import pytest

from warnd.cap import CapArea, parse_cap
from warnd.core.domain import Level, RegionView
from warnd.core.targeting import (
    AreaResolution,
    circle_polygon,
    normalise_code,
    region_index,
    resolve_area,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
HOME = "431222"


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> str:
    return f"POLYGON(({lon0} {lat0}, {lon1} {lat0}, {lon1} {lat1}, {lon0} {lat1}, {lon0} {lat0}))"


def r(code: str, parent: str | None, wkt: str | None = None) -> RegionView:
    level = {6: Level.COUNTY, 9: Level.TOWNSHIP, 12: Level.VILLAGE, 15: Level.GROUP}[len(code)]
    return RegionView(code=code, name=code, level=level, parent_code=parent, geometry_wkt=wkt)


def county() -> dict[str, RegionView]:
    regions = [
        r("431222", None, box(110.0, 28.0, 111.0, 29.0)),
        # 官庄镇: south-west quarter
        r("431222100", "431222", box(110.0, 28.0, 110.5, 28.5)),
        r("431222100201", "431222100", "POINT(110.2 28.2)"),
        r("431222100201001", "431222100201"),
        r("431222100201002", "431222100201"),
        r("431222100202", "431222100", "POINT(110.45 28.45)"),
        # east half; its village has no coordinates yet
        r("431222101", "431222", box(110.5, 28.0, 111.0, 29.0)),
        r("431222101201", "431222101"),
        # 楠木铺乡: north-west quarter, where the flash-flood circle is
        r("431222200", "431222", box(110.0, 28.5, 110.5, 29.0)),
        r("431222200201", "431222200", "POINT(110.30 28.60)"),  # circle centre
        r("431222200201001", "431222200201"),
        r("431222200201009", "431222200201", "POINT(110.40 28.90)"),  # group located far away
        r("431222200202", "431222200", "POINT(110.30 28.64)"),  # 4.45 km north
        # 0.05° east is 4.89 km at 28.6°N: inside. A circle buffered in degrees
        # (5 km / 111.32 = 0.0449°) would miss it.
        r("431222200203", "431222200", "POINT(110.35 28.60)"),
        # 0.05° north is 5.56 km: outside. A buffer of 5 km / (111.32 cos φ) degrees in both
        # directions (0.0511°) would wrongly include it.
        r("431222200204", "431222200", "POINT(110.30 28.65)"),
    ]
    return {x.code: x for x in regions}


ALL = frozenset(county())
TOWNSHIP_100 = frozenset({
    "431222100", "431222100201", "431222100201001", "431222100201002", "431222100202",
})  # fmt: skip
TOWNSHIP_200 = frozenset(c for c in ALL if c.startswith("431222200"))


def geo(*values: str, name: str = "行政区划代码") -> CapArea:
    return CapArea(area_desc="test", geocodes=tuple((name, v) for v in values))


def areas_of(file: str) -> tuple[CapArea, ...]:
    return parse_cap((DATA / file).read_bytes()).infos[0].areas


# -- normalise_code ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("431222000000", "431222"),
        ("431222100000", "431222100"),
        ("431222100201", "431222100201"),
        ("431222", "431222"),
        ("431222100", "431222100"),
        ("431222100201001", "431222100201001"),
        (" 431222000000\n", "431222"),
        ("431200000000", "431200"),
        ("4312", None),
        ("4312220000", None),
        ("43122210020100", None),
        ("43122A", None),
        ("４３１２２２", None),  # full-width digits are not a code we trust
        ("", None),
        ("WAZ021", None),
    ],
)
def test_normalise_code(raw: str, expected: str | None) -> None:
    assert normalise_code(raw) == expected


# -- geocodes ------------------------------------------------------------------------------


def test_county_geocode_covers_everything() -> None:
    res = resolve_area(areas_of("cma_rainstorm_geocode.xml"), county(), HOME)
    assert res == AreaResolution(codes=ALL, unknown_codes=(), out_of_area=())


def test_township_geocodes_cover_their_descendants_only() -> None:
    res = resolve_area(areas_of("cma_rainstorm_update.xml"), county(), HOME)
    assert res.codes == TOWNSHIP_100 | TOWNSHIP_200
    assert "431222" not in res.codes and "431222101201" not in res.codes


def test_village_geocode_includes_its_groups() -> None:
    res = resolve_area([geo("431222100201")], county(), HOME)
    assert res.codes == {"431222100201", "431222100201001", "431222100201002"}


def test_group_geocode() -> None:
    res = resolve_area([geo("431222100201002")], county(), HOME)
    assert res.codes == {"431222100201002"}


def test_nine_digit_township_code() -> None:
    res = resolve_area([geo("431222101")], county(), HOME)
    assert res.codes == {"431222101", "431222101201"}


@pytest.mark.parametrize("code", ["431200000000", "431200", "430000000000", "430000"])
def test_prefecture_or_province_code_covers_all_of_us(code: str) -> None:
    res = resolve_area([geo(code)], county(), HOME)
    assert res.codes == ALL
    assert res.out_of_area == ()


def test_provincial_feed_other_counties_are_out_of_area() -> None:
    areas = [
        CapArea(area_desc="辰溪县", geocodes=(("code", "431223000000"),)),
        CapArea(area_desc="沅陵县官庄镇", geocodes=(("code", "431222100000"),)),
        CapArea(area_desc="长沙市", geocodes=(("code", "430100000000"), ("code", "431223000000"))),
    ]
    res = resolve_area(areas, county(), HOME)
    assert res.codes == TOWNSHIP_100
    assert res.out_of_area == ("431223", "430100")
    assert res.unknown_codes == ()


def test_only_out_of_area_is_empty_not_error() -> None:
    res = resolve_area([geo("431223000000")], county(), HOME)
    assert res.empty
    assert res.out_of_area == ("431223",)


def test_unknown_and_malformed_codes() -> None:
    areas = [
        geo("431222100299", "431222300000", "431222100201"),
        CapArea(area_desc="NWS", geocodes=(("UGC", "WAZ021"), ("SAME", "4312"))),
    ]
    res = resolve_area(areas, county(), HOME)
    assert res.codes == {"431222100201", "431222100201001", "431222100201002"}
    assert res.unknown_codes == ("431222100299", "431222300", "WAZ021", "4312")
    assert res.out_of_area == ()


def test_duplicates_reported_once() -> None:
    res = resolve_area([geo("431223000000", "431223"), geo("X1", "X1")], county(), HOME)
    assert res.out_of_area == ("431223",)
    assert res.unknown_codes == ("X1",)


def test_jurisdiction_may_be_given_padded() -> None:
    res = resolve_area([geo("431222100201")], county(), "431222000000")
    assert "431222100201" in res.codes


def test_bad_jurisdiction() -> None:
    with pytest.raises(ValueError, match="jurisdiction"):
        resolve_area([], county(), "Yuanling")


def test_no_areas() -> None:
    assert resolve_area([], county(), HOME) == AreaResolution(codes=frozenset())


def test_regions_of_other_counties_never_returned() -> None:
    regions = county() | {
        "431223": r("431223", None, box(111.0, 28.0, 112.0, 29.0)),
        "431223100": r("431223100", "431223", box(111.0, 28.0, 111.5, 28.5)),
    }
    area = CapArea(
        area_desc="border",
        polygons=(((28.1, 110.9), (28.1, 111.1), (28.2, 111.1), (28.2, 110.9), (28.1, 110.9)),),
        geocodes=(("code", "431223100000"),),
    )
    res = resolve_area([area], regions, HOME)
    assert res.codes == {"431222", "431222101", "431222101201"}
    assert res.out_of_area == ("431223100",)


# -- polygons and circles ------------------------------------------------------------------


def test_polygon() -> None:
    res = resolve_area(areas_of("polygon_thunderstorm.xml"), county(), HOME)
    # The county and 官庄镇 outlines intersect; the village point is inside; its groups have
    # no coordinates and follow the village. The other village of 官庄镇 is outside.
    assert res.codes == {
        "431222",
        "431222100",
        "431222100201",
        "431222100201001",
        "431222100201002",
    }


def test_circle_radius_in_km() -> None:
    res = resolve_area(areas_of("circle_flash_flood.xml"), county(), HOME)
    assert res.codes == {
        "431222",
        "431222200",
        "431222200201",
        "431222200201001",  # no coordinates: follows its village
        "431222200202",
        "431222200203",
    }
    # 431222200201009 is a group with its own point outside the circle; 200204 is 5.56 km away.


def test_zero_radius_circle_is_a_point() -> None:
    area = CapArea(area_desc="p", circles=((28.40, 110.40, 0.0),))
    res = resolve_area([area], county(), HOME)
    assert res.codes == {"431222", "431222100"}


def test_self_intersecting_polygon_is_repaired() -> None:
    # A bow-tie around the village point at (28.2, 110.2).
    ring = ((28.15, 110.15), (28.25, 110.25), (28.25, 110.15), (28.15, 110.25), (28.15, 110.15))
    res = resolve_area([CapArea(area_desc="bow", polygons=(ring,))], county(), HOME)
    assert "431222100201" in res.codes


def test_geometry_less_descendants_follow_nearest_located_ancestor() -> None:
    area = CapArea(
        area_desc="east",
        polygons=(((28.8, 110.8), (28.8, 110.9), (28.9, 110.9), (28.9, 110.8), (28.8, 110.8)),),
    )
    res = resolve_area([area], county(), HOME)
    assert res.codes == {"431222", "431222101", "431222101201"}


def test_geocode_and_polygon_are_united() -> None:
    areas = [*areas_of("polygon_thunderstorm.xml"), geo("431222101000")]
    res = resolve_area(areas, county(), HOME)
    assert {"431222100201", "431222101", "431222101201"} <= res.codes


def test_unreadable_region_wkt_counts_as_no_geometry() -> None:
    # A village whose WKT does not parse is reported, and treated like one without
    # coordinates: it follows its township rather than silently dropping out.
    regions = county() | {"431222100203": r("431222100203", "431222100", "POINT(oops")}
    idx = region_index(regions)
    assert idx.bad_geometry == ("431222100203",)
    res = resolve_area(areas_of("polygon_thunderstorm.xml"), regions, HOME)
    assert {"431222100201", "431222100203"} <= res.codes
    far = CapArea(
        area_desc="east",
        polygons=(((28.8, 110.8), (28.8, 110.9), (28.9, 110.9), (28.9, 110.8), (28.8, 110.8)),),
    )
    assert "431222100203" not in resolve_area([far], regions, HOME).codes


def test_circle_polygon_geodesic_radius() -> None:
    lat, lon, radius = 28.6, 110.3, 10.0
    shape = circle_polygon(lat, lon, radius)
    minx, miny, maxx, maxy = shape.bounds
    km_per_deg_lat = 6371.0088 * math.pi / 180
    km_per_deg_lon = km_per_deg_lat * math.cos(math.radians(lat))
    # East-west extent in degrees is wider than north-south by 1/cos(lat).
    assert (maxx - minx) / 2 * km_per_deg_lon == pytest.approx(radius, rel=0.002)
    assert (maxy - miny) / 2 * km_per_deg_lat == pytest.approx(radius, rel=0.002)
    assert (maxx - minx) / (maxy - miny) == pytest.approx(1 / math.cos(math.radians(lat)), rel=0.01)


# -- index, cache, scale -------------------------------------------------------------------


def big_county(n_townships: int = 25, villages_each: int = 199) -> dict[str, RegionView]:
    regions = {"431222": r("431222", None, box(110.0, 28.0, 111.0, 29.0))}
    for t in range(n_townships):
        tcode = f"431222{100 + t:03d}"
        lon0 = 110.0 + (t % 5) * 0.2
        lat0 = 28.0 + (t // 5) * 0.2
        regions[tcode] = r(tcode, "431222", box(lon0, lat0, lon0 + 0.2, lat0 + 0.2))
        for v in range(villages_each):
            vcode = f"{tcode}{200 + v:03d}"
            x = lon0 + 0.01 + (v % 14) * 0.0135
            y = lat0 + 0.01 + (v // 14) * 0.0125
            regions[vcode] = r(vcode, tcode, f"POINT({x:.5f} {y:.5f})")
    return regions


def test_five_thousand_regions_resolve() -> None:
    # How fast: bench/, never a timed test.
    regions = big_county()
    assert len(regions) == 1 + 25 + 25 * 199
    res = resolve_area([geo("431222000000")], regions, HOME)
    assert res.codes == frozenset(regions)

    for _ in range(20):
        res = resolve_area(
            [CapArea(area_desc="c", circles=((28.1, 110.1, 3.0),), geocodes=(("c", "431222110"),))],
            regions,
            HOME,
        )
    assert "431222110" in res.codes and "431222100" in res.codes
    assert len([c for c in res.codes if c.startswith("431222110")]) == 200


def test_index_is_cached_and_rebuilt_on_change() -> None:
    regions = county()
    idx = region_index(regions)
    assert region_index(regions) is idx
    regions["431222100203"] = r("431222100203", "431222100", "POINT(110.25 28.25)")
    idx2 = region_index(regions)
    assert idx2 is not idx
    res = resolve_area(areas_of("polygon_thunderstorm.xml"), regions, HOME)
    assert "431222100203" in res.codes
    # Same content in a new mapping object: a separate index, same answer.
    assert resolve_area(areas_of("polygon_thunderstorm.xml"), dict(regions), HOME) == res


def test_descendants_walk() -> None:
    idx = region_index(county())
    assert idx.descendants("431222100") == TOWNSHIP_100 - {"431222100"}
    assert idx.descendants("431222100201002") == set()
    assert idx.descendants("431222100", "431222100201") == TOWNSHIP_100 - {"431222100"}
