"""What the benchmarks in bench/ share: the local Tencent SMS API server as warnd's provider,
the raw baselines (the SDK's 200-number batches, a batched INSERT), and the public settings
they run with. The generated public list and its import: devtools/demo/public_list.py.

    cfg = tencent_cfg(sim)                             # a TencentSmsApi, or provider_proc's JSON line
    rate = await raw_sdk_batch(cfg, 5000)              # msgs/s, 200-number SendSms batches
    rows_per_s = await raw_insert(db, 5000)            # one executemany INSERT
    public = bench_public_cfg()                        # the provider's QPS not the limit
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from channels.base import OutboundMessage
from channels.sms_tencent import TencentSms
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.config import PublicBudgetCfg, PublicCfg, TencentCfg
from warnd.db.engine import Database
from warnd.db.models import Event

CALLBACK_TOKEN = "bench-callback-token-0123"
TEMPLATE_ID = "100001"  # the simulator's default one-variable template
UNLIMITED_QPS = 10**6


def tencent_cfg(sim: TencentSmsApi | dict[str, Any], callback_token: str = CALLBACK_TOKEN) -> TencentCfg:
    """warnd's [sms.tencent] for a local Tencent SMS API server: the simulator itself, or the
    JSON line bench/provider_proc.py prints (base_url, secret_id, secret_key, sdk_app_id, sign_name)."""
    i = sim if isinstance(sim, dict) else {"base_url": sim.base_url, "secret_id": sim.secret_id,
                                           "secret_key": sim.secret_key, "sdk_app_id": sim.sdk_app_id,
                                           "sign_name": sim.sign_name}
    return TencentCfg(secret_id=i["secret_id"], secret_key=i["secret_key"], sdk_app_id=i["sdk_app_id"],
                      sign_name=i["sign_name"], template_id=TEMPLATE_ID, endpoint=i["base_url"].split("://")[1],
                      callback_token=callback_token)


def tencent_channel(cfg: TencentCfg) -> TencentSms:
    """The official SDK's channel as warnd builds it, with no engine around it."""
    return TencentSms(secret_id=cfg.secret_id, secret_key=cfg.secret_key, sdk_app_id=cfg.sdk_app_id,
                      sign_name=cfg.sign_name, template_id=cfg.template_id, endpoint=cfg.endpoint,
                      callback_token=cfg.callback_token)


async def raw_sdk_batch(cfg: TencentCfg, n: int, *, number_block: str = "+86137", in_flight: int | None = None,
                        text: str = "【临灾预警】基准测试：1小时内将出现特大暴雨。") -> float:
    """Numbers a second the SDK pushes to the provider in 200-number SendSms batches: all
    requests at once, or `in_flight` at a time (as the outbox's [delivery] concurrency)."""
    ch = tencent_channel(cfg)
    now = datetime.now(UTC)
    msgs = [OutboundMessage(f"raw{i}", f"{number_block}{i:08d}", text, now) for i in range(n)]
    starts = list(range(0, n, 200))
    step = in_flight or len(starts) or 1
    t = time.perf_counter()
    try:
        for k in range(0, len(starts), step):
            await asyncio.gather(*(ch.send_many(msgs[j:j + 200], f"raw:{j}") for j in starts[k:k + step]))
        return n / (time.perf_counter() - t)
    finally:
        await ch.close()


def bench_public_cfg(qps: float = UNLIMITED_QPS, plan_chunk: int = PublicCfg().plan_chunk) -> PublicCfg:
    """[public] for a benchmark: enabled, the Tencent budget's message rate at `qps` (by default
    high enough that the provider's limit is not what is measured: Tencent's default is the
    channel's 3,000/s), the shipped per-number limits."""
    budgets = PublicCfg().budgets | {"tencent": PublicBudgetCfg(qps=qps, burst=qps)}
    return PublicCfg(enabled=True, budgets=budgets, plan_chunk=plan_chunk)


async def raw_insert(db: Database, n: int) -> float:
    """Rows a second of one executemany INSERT (events) through the database stack warnd uses."""
    now = datetime.now(UTC)
    rows = [dict(at=now, kind="bench", data={"i": i, "phone": f"+86137{i:08d}"}) for i in range(n)]
    t = time.perf_counter()
    async with db.session() as s, s.begin():
        await (await s.connection()).execute(insert(Event), rows)
    return n / (time.perf_counter() - t)
