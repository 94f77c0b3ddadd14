"""The fault harness's short run (docs/faults.md has the long ones): real `warnd serve`
processes on PostgreSQL SIGKILLed and restarted at seeded random moments while warnings go
out, officials answer through whichever instance is up and silent ones climb the ladder.
The verdict comes from the provider's accepted log and the database: nothing lost, nothing
sent twice, no rung fired twice, no call left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.faults.harness import Scenario, run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_two_instances_killed_at_random_lose_nothing_and_send_nothing_twice(pg_url: str, tmp_path: Path) -> None:
    scenario = Scenario("two instances, kills", instances=2, kills=2, seed=12)
    report = await run(scenario, pg_url, tmp_path)
    print(report.as_dict())
    assert report.kills == scenario.kills
    assert report.calls == report.officials  # every official called once (disjoint villages)
    assert report.ok, report.as_dict()
