"""From a CAP warning's areas to the region codes of our jurisdiction it covers.

Administrative codes (行政区划代码) are matched first, by prefix: the weather service's
CAP feed often carries only a 12-digit code and no polygon. Polygons and circles are
then intersected with region geometries (village points, township outlines) through a
spatial index. Nothing here does I/O.

Code lengths: 6 county, 9 township, 12 village, 15 group (组: our convention, village
code + 3 digits). Trailing zero padding is not significant: 431222000000 is the county
431222, and 431200 (a prefecture) covers every county starting 4312.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from threading import Lock
from types import MappingProxyType

import shapely
from shapely import STRtree
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from warnd.cap.model import CapArea
from warnd.core.domain import RegionView

_CODE_LENGTHS = (6, 9, 12, 15)
_EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG); error < 0.5 % against the ellipsoid
_CIRCLE_SEGMENTS = 72


def normalise_code(code: str) -> str | None:
    """Canonical form of an administrative code, or None if it is not one.

    A 12-digit code is reduced to its significant prefix (431222000000 → 431222,
    431222100000 → 431222100); 6-, 9-, 12- and 15-digit codes are otherwise kept.
    """
    c = code.strip()
    if not c.isascii() or not c.isdigit() or len(c) not in _CODE_LENGTHS:
        return None
    if len(c) == 12:
        if c.endswith("000000"):
            return c[:6]
        if c.endswith("000"):
            return c[:9]
    return c


def match_prefix(code: str) -> str:
    """The prefix every code inside `code` starts with. County-level codes end in 00 only
    for a prefecture (431200 → 4312) and in 0000 only for a province (430000 → 43)."""
    if len(code) == 6:
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


@dataclass(frozen=True)
class AreaResolution:
    codes: frozenset[str]  # every covered region code, expanded to descendants
    unknown_codes: tuple[str, ...] = ()  # in our jurisdiction but not in the regions, or malformed
    out_of_area: tuple[str, ...] = ()  # other counties' codes: normal for a provincial feed

    @property
    def empty(self) -> bool:
        return not self.codes


class RegionIndex:
    """Children index and spatial index over one regions mapping, built once.

    For 5,000 regions the WKT parsing and tree build take tens of milliseconds; queries
    afterwards are sub-millisecond. resolve_area() caches one per mapping object.
    """

    def __init__(self, regions: Mapping[str, RegionView]) -> None:
        self.regions = regions
        self._snapshot = tuple(regions.items())
        children: dict[str, list[str]] = {}
        for code, region in regions.items():
            if region.parent_code:
                children.setdefault(region.parent_code, []).append(code)
        # Children in code order (area_words lists places in that order).
        self.children: dict[str, tuple[str, ...]] = {k: tuple(sorted(v)) for k, v in children.items()}
        self.sorted_codes = tuple(sorted(regions))

        geoms: list[BaseGeometry] = []
        geom_codes: list[str] = []
        bad: list[str] = []
        for code, region in regions.items():
            if not region.geometry_wkt:
                continue
            try:
                g = shapely.from_wkt(region.geometry_wkt)
            except shapely.errors.ShapelyError:
                bad.append(code)
                continue
            if g is None or g.is_empty:
                bad.append(code)
                continue
            # Hand-drawn township outlines self-intersect often enough; repair rather than
            # let intersects() give a wrong answer.
            if not g.is_valid:
                g = shapely.make_valid(g)
            geoms.append(g)
            geom_codes.append(code)
        self.geometry_codes = tuple(geom_codes)
        # Regions whose WKT did not parse: treated as having no geometry, so they follow
        # their nearest located ancestor instead of silently dropping out.
        self.bad_geometry = tuple(bad)
        self._has_geometry = frozenset(geom_codes)
        self._tree = STRtree(geoms) if geoms else None

    def is_current(self, regions: Mapping[str, RegionView]) -> bool:
        """Whether this index still describes `regions` (same values, by identity)."""
        if regions is not self.regions or len(regions) != len(self._snapshot):
            return False
        if isinstance(regions, MappingProxyType):
            return True  # a roster snapshot's read-only regions: the same object, the same values
        return all(
            k == k0 and v is v0
            for (k, v), (k0, v0) in zip(regions.items(), self._snapshot, strict=True)
        )

    def descendants(self, *codes: str) -> set[str]:
        """All descendants of `codes` (not the codes themselves): one walk over the
        children index, each region visited at most once however many roots share it."""
        out: set[str] = set()
        stack = list(codes)
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out

    def with_prefix(self, prefix: str) -> list[str]:
        """Region codes starting with `prefix` (binary search over the sorted codes)."""
        lo = bisect.bisect_left(self.sorted_codes, prefix)
        out = []
        for code in itertools.islice(self.sorted_codes, lo, None):
            if not code.startswith(prefix):
                break
            out.append(code)
        return out

    def intersecting(self, shape: BaseGeometry) -> set[str]:
        """Codes of regions whose geometry intersects `shape`, plus the geometry-less
        descendants of those (a 组 without coordinates shares its village's fate)."""
        if self._tree is None:
            return set()
        hits = {
            self.geometry_codes[int(i)] for i in self._tree.query(shape, predicate="intersects")
        }
        out = set(hits)
        for code in hits:
            stack = [code]
            while stack:
                for child in self.children.get(stack.pop(), ()):
                    if child not in self._has_geometry and child not in out:
                        out.add(child)
                        stack.append(child)
        return out


_cache: dict[int, RegionIndex] = {}
_cache_lock = Lock()
_CACHE_SIZE = 4


def region_index(regions: Mapping[str, RegionView]) -> RegionIndex:
    """The cached RegionIndex for this mapping, rebuilt if the mapping changed."""
    with _cache_lock:
        idx = _cache.get(id(regions))
        # The cached index holds a reference to the mapping, so its id cannot be reused
        # by another object while cached; is_current() catches in-place edits.
        if idx is not None and idx.is_current(regions):
            return idx
    idx = RegionIndex(regions)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[id(regions)] = idx
    return idx


def circle_polygon(lat: float, lon: float, radius_km: float) -> BaseGeometry:
    """A CAP circle as a lon/lat polygon whose vertices are at the true great-circle
    distance from the centre. Degrees of longitude shrink with latitude (at 28°N one is
    ~98 km, not 111), so buffering in degrees would be wrong by up to 20 % in China."""
    if radius_km <= 0:
        return Point(lon, lat)
    # The chords of an n-gon fall inside its circle; putting the vertices at r/cos(pi/n)
    # makes the polygon contain the whole circle (a few metres too generous, never short).
    d = radius_km / math.cos(math.pi / _CIRCLE_SEGMENTS) / _EARTH_RADIUS_KM
    phi1, lam1 = math.radians(lat), math.radians(lon)
    ring = []
    for k in range(_CIRCLE_SEGMENTS):
        bearing = 2 * math.pi * k / _CIRCLE_SEGMENTS
        phi2 = math.asin(
            math.sin(phi1) * math.cos(d) + math.cos(phi1) * math.sin(d) * math.cos(bearing)
        )
        lam2 = lam1 + math.atan2(
            math.sin(bearing) * math.sin(d) * math.cos(phi1),
            math.cos(d) - math.sin(phi1) * math.sin(phi2),
        )
        ring.append((math.degrees(lam2), math.degrees(phi2)))
    return Polygon(ring)


def cap_polygon(ring: Sequence[tuple[float, float]]) -> BaseGeometry:
    """A CAP polygon ((lat, lon) pairs) as a lon/lat shapely geometry, repaired if it
    self-intersects (bow-tie polygons from hand-drawn areas are common)."""
    poly = Polygon([(lon, lat) for lat, lon in ring])
    return poly if poly.is_valid else shapely.make_valid(poly)


def resolve_area(
    areas: Sequence[CapArea], regions: Mapping[str, RegionView], jurisdiction: str
) -> AreaResolution:
    """Region codes of `jurisdiction` (a county code) covered by the CAP areas.

    Geocodes (any valueName) matching a region cover it and all its descendants; a code
    broader than the jurisdiction (its prefecture or province) covers all of it. Polygons
    and circles cover each region whose geometry intersects them, plus descendants that
    have no geometry of their own (their nearest located ancestor decides for them).
    Only regions inside the jurisdiction are returned.
    """
    idx = region_index(regions)
    home = normalise_code(jurisdiction)
    if home is None:
        raise ValueError(f"jurisdiction {jurisdiction!r} is not an administrative code")
    home_prefix = match_prefix(home)

    covered: set[str] = set()
    unknown: list[str] = []
    out_of_area: list[str] = []

    for area in areas:
        for _name, value in area.geocodes:
            code = normalise_code(value)
            if code is None:
                _add_once(unknown, value.strip())
                continue
            prefix = match_prefix(code)
            if prefix.startswith(home_prefix):
                matched = idx.with_prefix(prefix)
            elif home_prefix.startswith(prefix):
                # The prefecture or province containing us: all of our county.
                matched = idx.with_prefix(home_prefix)
            else:
                _add_once(out_of_area, code)
                continue
            if not matched:
                _add_once(unknown, code)
                continue
            covered.update(matched)
            covered |= idx.descendants(*matched)

        shapes: list[BaseGeometry] = [cap_polygon(ring) for ring in area.polygons]
        shapes += [circle_polygon(lat, lon, r) for lat, lon, r in area.circles]
        for shape in shapes:
            covered |= idx.intersecting(shape)

    return AreaResolution(
        codes=frozenset(c for c in covered if c.startswith(home_prefix)),
        unknown_codes=tuple(unknown),
        out_of_area=tuple(out_of_area),
    )


def _add_once(items: list[str], value: str) -> None:
    if value not in items:
        items.append(value)
