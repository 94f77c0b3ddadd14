"""area_words walks a cached region tree for a roster snapshot's read-only regions: the same
words as a plain walk of the whole tree (the form it had before the cache), for any covered set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.core.domain import Level, RegionView
from warnd.core.templates import area_words


def _county() -> dict[str, RegionView]:
    regions = {"431222": RegionView("431222", "沅陵县", Level.COUNTY, None)}
    for t in range(1, 4):
        tc = f"431222{t:03d}"
        regions[tc] = RegionView(tc, f"{t}镇", Level.TOWNSHIP, "431222")
        for v in range(1, 4 if t != 3 else 2):
            vc = f"{tc}{200 + v:03d}"
            regions[vc] = RegionView(vc, f"{t}{v}村", Level.VILLAGE, tc)
            for g in range(1, 3 if v != 2 else 1):
                gc = f"{vc}{g:03d}"
                regions[gc] = RegionView(gc, f"{g}组", Level.GROUP, vc)
    regions["431299200"] = RegionView("431299200", "飞地村", Level.VILLAGE, "431299")  # an orphan
    return regions


REGIONS = _county()
PROXY = MappingProxyType(dict(REGIONS))


def reference(codes: Iterable[str], regions: Mapping[str, RegionView]) -> tuple[bool, list[str], list[str]]:
    """Whole county?, the touched townships, and for each the whole places — by walking every
    region, as area_words did before its tree was cached."""
    covered = {c for c in codes if c in regions}
    children: dict[str | None, list[RegionView]] = {}
    for r in regions.values():
        children.setdefault(r.parent_code, []).append(r)

    def whole(code: str) -> bool:
        kids = children.get(code, [])
        return code in covered or (bool(kids) and all(whole(k.code) for k in kids))

    def touched(code: str) -> bool:
        return code in covered or any(touched(k.code) for k in children.get(code, []))

    towns = sorted(c for c, r in regions.items() if r.level == Level.TOWNSHIP and touched(c))
    return whole("431222"), towns, sorted(c for c in regions if whole(c) and c not in covered)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.sampled_from([*sorted(REGIONS), "431222999", "xx"])))
def test_the_cached_tree_says_what_a_full_walk_says(codes: set[str]) -> None:
    words = area_words(codes, PROXY)
    assert words == area_words(codes, REGIONS) == area_words(codes, PROXY)  # cached, fresh, cached again
    whole_county, towns, _ = reference(codes, REGIONS)
    if not {c for c in codes if c in REGIONS}:
        assert words == ""
    elif whole_county:
        assert words == "沅陵县全境"
    else:
        for t in towns:  # every touched township is named (unless shortened to a count)
            assert REGIONS[t].name in words or "等" in words


def test_a_village_whose_groups_are_all_covered_is_named_as_the_village() -> None:
    groups = [c for c, r in REGIONS.items() if r.parent_code == "431222001201"]
    assert area_words(groups, PROXY) == "1镇11村"
    assert area_words(groups[:1], PROXY) == "1镇11村1组"
