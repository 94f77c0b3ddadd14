"""The fault harness's short runs (docs/faults.md has the long ones): real `warnd serve`
processes on PostgreSQL SIGKILLed and restarted at seeded random moments while warnings go
out, officials answer through whichever instance is up and silent ones climb the ladder.
The verdict comes from the provider's accepted log and the database: nothing lost, nothing
sent twice, no rung fired twice, no call left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.faults.harness import Scenario, run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("scenario", [
    Scenario("one instance, kills", instances=1, kills=2, seed=11),
    Scenario("three instances, kills", instances=3, kills=2, seed=12),
], ids=lambda sc: f"{sc.instances}x{sc.kills}")
async def test_fault_scenario_ends_with_nothing_lost_or_twice(scenario: Scenario, pg_url: str, tmp_path: Path) -> None:
    report = await run(scenario, pg_url, tmp_path)
    print(report.as_dict())
    assert report.kills == scenario.kills
    assert report.calls == report.officials  # every official called once (disjoint villages)
    assert report.ok, report.as_dict()
