"""Benchmark: public fan-out for 100,000 recipients, as a ratio to the raw provider batch rate
measured in the same run (these machines are noisy; ratios travel, absolute numbers do not).

    .venv/bin/python bench/bench_public.py [--recipients 100000]

Baseline:
  raw_sms     — numbers/s the Tencent SDK pushes to the local Tencent API server in
                200-number SendSms batches, with no engine around it.
Measured (generated county: 330 villages; a generated public list):
  import      — list rows/s of `warnd public import` (CSV, Chinese headers);
  plan        — targets/s from a red imminent warning to committed targets + outbox rows
                (budget decisions included);
  fan-out     — public SMS/s through the paced public outbox (claim, batch, send, record),
                the provider's QPS set high enough not to be the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from devtools.benchkit import bench_public_cfg, raw_sdk_batch, tencent_cfg
from devtools.demo.capgen import cap_xml
from devtools.demo.county import generate_county
from devtools.demo.public_list import import_generated_list
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import DatabaseCfg, Settings, SmsCfg


async def main(recipients: int) -> dict[str, float]:
    sys.setswitchinterval(0.0005)
    work = Path(tempfile.mkdtemp(prefix="warnd-bench-public-"))
    sim = TencentSmsApi()
    await sim.start()
    clock = ManualClock()
    settings = Settings(database=DatabaseCfg(url=f"sqlite:///{work / 'bench.db'}", durable=False),
                        sms=SmsCfg(provider="tencent", tencent=tencent_cfg(sim)),
                        public=bench_public_cfg(plan_chunk=5000))
    engine = App.build(settings, clock=clock)
    await engine.db.upgrade()
    await generate_county(engine.db, clock.now())
    out: dict[str, float] = {"recipients": recipients}
    # as many requests in flight as the outbox allows ([delivery] concurrency 32)
    out["raw_sms_per_s"] = await raw_sdk_batch(tencent_cfg(sim), min(recipients, 20_000), number_block="+86136",
                                               in_flight=32, text="【红色临灾预警】基准测试")
    sent_before = len(sim.messages)

    report, seconds = await import_generated_list(engine.db, work / "public.csv", recipients, now=clock.now())
    assert report.added == recipients, report.text()
    out["import_rows_per_s"] = recipients / seconds

    now = clock.now()
    await engine.ingestor.submit_cap(cap_xml(
        "BENCH-PUB-1", now, now + timedelta(hours=1), "红色", "特大暴雨", "立即转移", ["431222000000"], step="imminent"))
    assert engine.public is not None and engine.public_outbox is not None
    # Planning waits while officials' messages are due and not yet taken (warnd/public/fanout.py):
    # their outbox sends them first, as it would in the engine (not timed here).
    while await engine.outbox.pass_once():
        pass
    officials = len(sim.messages) - sent_before
    t = time.perf_counter()
    while await engine.public.step():
        pass
    out["plan_targets_per_s"] = recipients / (time.perf_counter() - t)

    t = time.perf_counter()
    while await engine.public_outbox.pass_once():
        pass
    sent = len(sim.messages) - sent_before - officials
    out["public_fanout_sms_per_s"] = sent / (time.perf_counter() - t)
    out["public_sent"] = sent
    assert sent == recipients, f"{sent} of {recipients} public SMS sent"
    await engine.stop()
    await sim.stop()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=100_000)
    r = asyncio.run(main(ap.parse_args().recipients))
    ratios = {
        "public_fanout_vs_raw_sms": r["public_fanout_sms_per_s"] / r["raw_sms_per_s"],
        "plan_vs_raw_sms": r["plan_targets_per_s"] / r["raw_sms_per_s"],
        "import_vs_raw_sms": r["import_rows_per_s"] / r["raw_sms_per_s"],
    }
    print(json.dumps({"rates": {k: round(v, 1) for k, v in r.items()},
                      "ratios": {k: round(v, 4) for k, v in ratios.items()}}, indent=2))
