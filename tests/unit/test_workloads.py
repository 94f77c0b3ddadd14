"""The benchmark workloads (devtools/workloads.py): the same seed gives the same county, with
the sizes issue 15 names; the province keeps its counties apart."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devtools.demo.county import county_rows
from devtools.workloads import RED_RAIN_631, w1, w100

NOW = datetime(2026, 7, 1, tzinfo=UTC)


def _dump(work):  # type: ignore[no-untyped-def]
    return ([r.model_dump() for r in work.regions], [p.model_dump() for p in work.people], work.speakers)


def test_w1_has_the_sizes_of_one_county_storm() -> None:
    counts = w1(631, NOW).counts()
    assert counts["townships"] == 20
    assert counts["villages"] == 400
    assert counts["groups"] == 2000
    assert 5200 <= counts["officials"] <= 5400
    assert counts["speakers"] == 4365
    assert counts["public_recipients"] == 100_000


def test_the_same_seed_gives_the_same_county_and_answers() -> None:
    a, b = w1(631, NOW), w1(631, NOW)
    assert _dump(a) == _dump(b)
    assert a.answers("imminent") == b.answers("imminent")
    other = w1(632, NOW)
    assert [p.name for p in other.people] != [p.name for p in a.people]


def test_seventy_percent_confirm_inside_their_window() -> None:
    answers = w1(631, NOW).answers("imminent")
    share = sum(a.confirms for a in answers) / len(answers)
    assert 0.67 <= share <= 0.73
    assert all(0 < a.fraction < 1 for a in answers if a.confirms)
    assert all(a.fraction == 0 for a in answers if not a.confirms)
    # each step draws its own answers
    assert [a.confirms for a in answers] != [a.confirms for a in w1(631, NOW).answers("warning")]


def test_every_official_has_a_deputy_that_exists_and_a_unique_number() -> None:
    work = w1(631, NOW)
    keys = {p.key for p in work.people}
    assert len(keys) == len(work.people)
    roles = Counter(p.role for p in work.people)
    assert roles["grid_worker"] == 3 * 400 and roles["monitor"] == 2 * 400
    assert all(p.deputy_key in keys for p in work.people if p.deputy_key is not None)
    regions = {r.code for r in work.regions}
    assert all(code in regions for _, code in work.speakers)


def test_the_storm_is_a_red_631_sequence_each_updating_the_one_before() -> None:
    assert [s.step for s in RED_RAIN_631] == ["forecast", "warning", "imminent"]
    assert RED_RAIN_631[-1].colour == "红色"
    assert [s.msg_type for s in RED_RAIN_631] == ["Alert", "Update", "Update"]
    assert sorted(s.offset for s in RED_RAIN_631) == [s.offset for s in RED_RAIN_631]


def test_w100_is_a_hundred_counties_ten_overlapping_and_kept_apart() -> None:
    p = w100(631)
    assert len(p.counties) == 100 and len({c.code for c in p.counties}) == 100
    assert len(p.overlapping) == 10
    late = sorted(c.storm_start for c in p.counties if c.code not in p.overlapping)
    assert late[0] >= timedelta(minutes=10)
    assert all(b - a >= timedelta(minutes=10) for a, b in itertools.pairwise(late))
    assert w100(631).overlapping == p.overlapping
    one, two = p.counties[0].workload(NOW), p.counties[1].workload(NOW)
    assert one.counts()["villages"] == 400
    assert not {x.phone for x in one.people} & {x.phone for x in two.people}
    assert {r.code[:6] for r in one.regions} == {p.counties[0].code}


def test_w100_reduced_scale_shrinks_every_county() -> None:
    p = w100(631, counties=4, overlapping=2, scale=0.1)
    assert len(p.counties) == 4 and len(p.overlapping) == 2
    counts = p.counties[0].workload(NOW).counts()
    assert counts["villages"] == 40 and counts["speakers"] == 436
    with pytest.raises(ValueError):
        w100(631, counties=4, overlapping=5)


def test_the_demo_county_keeps_its_shape() -> None:
    regions, people = county_rows(NOW)
    assert sum(r.level == "village" for r in regions) == 330
    assert len(people) == 3396
