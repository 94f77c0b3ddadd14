"""One warnd instance of the W100 benchmark: the engines of a group of counties in one
process, each county its own App on its own PostgreSQL database (started by bench/w100.py).

Reads one JSON line of parameters on stdin, builds and starts the counties' engines, prints
"ready", waits for "go", submits the imminent step of each of its storm counties at once,
runs until their outboxes are drained and prints one JSON line {county: deliveries}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.demo.capgen import cap_xml
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import County, DatabaseCfg, Settings, SmsCfg, TencentCfg
from warnd.logging import configure_logging


async def main() -> None:
    configure_logging(level=40)
    p = json.loads(sys.stdin.readline())
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    apps: dict[str, App] = {}
    for c in p["counties"]:
        settings = Settings(county=County(code=c["code"], name=c["name"], sender_name=f"{c['name']}防汛抗旱指挥部"),
                            # small pools: every county of this instance has its own (docs/province.md)
                            database=DatabaseCfg(url=c["url"], pool_size=p["pool"][0], max_overflow=p["pool"][1]),
                            sms=SmsCfg(provider="tencent", tencent=TencentCfg(**p["tencent"])))
        apps[c["code"]] = App.build(settings, clock=clock)
    for app in apps.values():
        await app.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    now = clock.now()

    async def storm(code: str) -> tuple[str, int]:
        r = await apps[code].ingestor.submit_cap(cap_xml(
            f"W100-{code}-{p['run']}", now, now + timedelta(hours=1), "红色", "1小时内将出现特大暴雨，山洪风险极高",
            "请立即组织危险区群众转移，鸣锣吹哨，敲门入户。", [f"{code}000000"], step="imminent"), source="bench")
        await apps[code].runner.settle(1800)
        return code, r.deliveries

    done = dict(await asyncio.gather(*(storm(code) for code in p["storms"] if code in apps)))
    print(json.dumps(done), flush=True)
    for app in apps.values():
        await app.stop()


if __name__ == "__main__":
    asyncio.run(main())
