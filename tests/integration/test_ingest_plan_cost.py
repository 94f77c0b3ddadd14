"""Planning inside the ingest request uses the roster's cached people index: a warning does
not rebuild it (W1: ~5 ms and 5,300 objects per warning, more under GC pressure)."""

from __future__ import annotations

import pytest

from support.channel_stack import Stack, imminent
from warnd.core import planner


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_warning_is_planned_on_the_cached_people_index(st: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    await st.engine.roster.get()  # the snapshot (and its index) is built once, on load
    built = []
    real = planner.PeopleIndex.build.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(planner.PeopleIndex, "build", classmethod(lambda cls, people: built.append(1) or real(cls, people)))
    for i in range(3):
        body = await st.post_cap(imminent(f"IDX-{i}"))
        assert body["calls"] >= 4
    assert built == []
