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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from channels.base import OutboundMessage
from channels.sms_tencent import TencentSms
from devtools.demo.capgen import cap_xml
from devtools.demo.county import generate_county
from devtools.demo.public_list import write_public_list
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import DatabaseCfg, PublicBudgetCfg, PublicCfg, Settings, SmsCfg, TencentCfg
from warnd.db.models import Region
from warnd.public.importer import import_list

CB = "bench-callback-token-0123"


async def raw_sms(sim: TencentSmsApi, n: int) -> float:
    ch = TencentSms(secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
                    sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://")[1],
                    callback_token=CB)
    now = datetime.now(UTC)
    msgs = [OutboundMessage(f"raw{i}", f"+86136{i:08d}", "【红色临灾预警】基准测试", now) for i in range(n)]
    t = time.perf_counter()
    for i in range(0, n, 200 * 32):  # as many requests in flight as the outbox allows (concurrency 32)
        await asyncio.gather(*(ch.send_many(msgs[j:j + 200], f"raw:{j}") for j in range(i, min(i + 200 * 32, n), 200)))
    rate = n / (time.perf_counter() - t)
    await ch.close()
    return rate


async def main(recipients: int) -> dict[str, float]:
    sys.setswitchinterval(0.0005)
    work = Path(tempfile.mkdtemp(prefix="warnd-bench-public-"))
    sim = TencentSmsApi()
    await sim.start()
    clock = ManualClock()
    settings = Settings(
        database=DatabaseCfg(url=f"sqlite:///{work / 'bench.db'}", durable=False),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://")[1],
            callback_token=CB)),
        public=PublicCfg(budgets={"tencent": PublicBudgetCfg(qps=10**6, burst=10**6)}, plan_chunk=5000),
    )
    engine = App.build(settings, clock=clock)
    await engine.db.upgrade()
    await generate_county(engine.db, clock.now())
    async with engine.db.read() as s:
        regions = {r.code: r for r in (await s.exec(select(Region))).all()}
    villages = [(r.code, r.name, regions[r.parent_code].name if r.parent_code in regions else "")
                for r in sorted(regions.values(), key=lambda r: r.code) if r.level == "village"]
    path = work / "public.csv"
    write_public_list(path, villages, recipients)
    out: dict[str, float] = {"recipients": recipients}
    out["raw_sms_per_s"] = await raw_sms(sim, min(recipients, 20_000))
    sent_before = len(sim.messages)

    t = time.perf_counter()
    await import_list(engine.db, path, now=clock.now())
    out["import_rows_per_s"] = recipients / (time.perf_counter() - t)

    now = clock.now()
    await engine.ingestor.submit_cap(cap_xml(
        "BENCH-PUB-1", now, now + timedelta(hours=1), "红色", "特大暴雨", "立即转移", ["431222000000"], step="imminent"))
    assert engine.public is not None and engine.public_outbox is not None
    t = time.perf_counter()
    while await engine.public.step():
        pass
    out["plan_targets_per_s"] = recipients / (time.perf_counter() - t)

    t = time.perf_counter()
    while await engine.public_outbox.pass_once():
        pass
    sent = len(sim.messages) - sent_before
    out["public_fanout_sms_per_s"] = sent / (time.perf_counter() - t)
    out["public_sent"] = sent
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
