"""Provider faults: functions that arm the Tencent SMS simulator's fault controls, used by the
fault scenarios (`Scenario.provider`, devtools/faults/__main__.py) and by the standalone
fault-injecting provider (`python -m devtools.faults.provider`, deploy/province/)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from devtools.faults.harness import Provider
from devtools.simulators.tencent_sms_api import TencentSmsApi


def provider_500s(share: float) -> Provider:
    """Gateway trouble: about `share` of API calls answered HTTP 500 before anything is
    accepted (the simulator's fault queue; the send is retried)."""

    def arm(sim: TencentSmsApi, rng: random.Random) -> None:
        original = sim._take_fault

        def take() -> Any:
            queued = original()
            return queued if queued is not None else (500 if rng.random() < share else None)

        sim._take_fault = take  # type: ignore[method-assign]

    return arm


def late_and_broken(late: float, broken: float) -> Provider:
    """Sends the provider accepted but answered after the SDK's timeout (`late` of them), or
    answered HTTP 500 (`broken`, half of them accepted first): every one in doubt, to be
    looked up before anything is sent again."""

    def arm(sim: TencentSmsApi, rng: random.Random) -> None:
        sim.late_rate, sim.error_rate, sim.late_seconds = late, broken, 6.0

    return arm


def outage(after: float, seconds: float) -> Provider:
    """The provider's gateway answers every call 503 for `seconds` of real time, starting
    `after` seconds into the run (at ×100, 6 s is ten minutes of warnd time)."""

    def arm(sim: TencentSmsApi, rng: random.Random) -> None:
        async def down() -> None:
            await asyncio.sleep(after)  # the scenario's timeline, not a wait for an event
            await sim.outage_start("503")
            await asyncio.sleep(seconds)
            await sim.outage_stop()

        sim._spawn(down())

    return arm
