"""Benchmark: the engine's hot paths on a county-wide imminent step, as ratios to baselines
measured in the same run (these machines are noisy; ratios travel, absolute numbers do not).

    .venv/bin/python bench/bench_engine.py [--officials-scale 1]

Baselines:
  raw_insert  — rows/s of one executemany INSERT through the same async SQLite stack;
  raw_sms     — numbers/s the Tencent SDK pushes to the local Tencent API server in
                200-number SendSms batches, with no engine around it.
Measured (generated county: 22 townships, 330 villages, 3,396 officials):
  plan+store  — officials/s from CAP ingest to committed calls + deliveries;
  fan-out     — SMS/s through the outbox (claim, batch, send, record, restart windows);
  replies     — replies/s through the group-committed inbound path (real reply rows);
  escalation  — ladder rungs/s fired by the escalation worker's batches.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from channels.base import InboundReply
from devtools.benchkit import raw_insert, raw_sdk_batch, tencent_cfg
from devtools.demo.capgen import cap_xml
from devtools.demo.county import generate_county
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import DatabaseCfg, Settings, SmsCfg
from warnd.db.models import Person


async def main() -> dict[str, float]:
    sys.setswitchinterval(0.0005)
    work = Path(tempfile.mkdtemp(prefix="warnd-bench-"))
    sim = TencentSmsApi()
    await sim.start()
    clock = ManualClock()
    settings = Settings(database=DatabaseCfg(url=f"sqlite:///{work / 'bench.db'}", durable=False),
                        sms=SmsCfg(provider="tencent", tencent=tencent_cfg(sim)))
    engine = App.build(settings, clock=clock)
    await engine.db.upgrade()
    await generate_county(engine.db, clock.now())
    out: dict[str, float] = {}
    out["raw_insert_rows_per_s"] = await raw_insert(engine.db, 5000)
    out["raw_sms_per_s"] = await raw_sdk_batch(tencent_cfg(sim), 4000, text="【临灾预警】基准测试")
    sent_before = len(sim.messages)

    now = clock.now()
    t = time.perf_counter()
    result = await engine.ingestor.submit_cap(cap_xml(
        "BENCH-1", now, now + timedelta(hours=1), "红色", "特大暴雨", "立即转移", ["431222000000"], step="imminent"))
    out["plan_store_officials_per_s"] = result.calls / (time.perf_counter() - t)

    t = time.perf_counter()
    while await engine.outbox.pass_once():
        pass
    sent = len(sim.messages) - sent_before
    out["fanout_sms_per_s"] = sent / (time.perf_counter() - t)

    async with engine.db.read() as s:
        phones = [p.phone for p in (await s.exec(select(Person).where(Person.role != "duty_officer"))).all()]
    stamp = datetime.now(UTC)
    t = time.perf_counter()
    await asyncio.gather(*(engine.inbound.on_reply(InboundReply("tencent", f"b{i}", ph, "收到", stamp))
                           for i, ph in enumerate(phones[: len(phones) // 2])))
    out["replies_per_s"] = (len(phones) // 2) / (time.perf_counter() - t)

    await clock.advance(timedelta(hours=2))
    t, rungs = time.perf_counter(), 0
    while n := await engine.escalation.fire_due():
        rungs += n
    out["escalation_rungs_per_s"] = rungs / (time.perf_counter() - t)

    await engine.stop()
    await sim.stop()
    return out


if __name__ == "__main__":
    r = asyncio.run(main())
    ratios = {
        "fanout_vs_raw_sms": r["fanout_sms_per_s"] / r["raw_sms_per_s"],
        "plan_store_vs_raw_insert": r["plan_store_officials_per_s"] / r["raw_insert_rows_per_s"],
        "replies_vs_raw_insert": r["replies_per_s"] / r["raw_insert_rows_per_s"],
        "escalation_vs_raw_insert": r["escalation_rungs_per_s"] / r["raw_insert_rows_per_s"],
    }
    print(json.dumps({"rates": {k: round(v, 1) for k, v in r.items()},
                      "ratios": {k: round(v, 4) for k, v in ratios.items()}}, indent=2))
