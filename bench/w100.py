"""Benchmark W100, "a province" (devtools/workloads.py): counties sharing one PostgreSQL server
(a database per county) and one SMS provider, the storms of several overlapping; how the
busy moment — every storm county's imminent step at once — scales with the number of warnd
instances (processes, each running the engines of a group of counties).

    # full shape (100 counties of W1 size, ten storms at once; hours and a big machine):
    .venv/bin/python bench/w100.py --counties 100 --overlap 10 --scale 1 --instances 1,2,4,8
    # reduced, as run on the 2-core machine for BENCHMARKS.md:
    .venv/bin/python bench/w100.py --counties 8 --overlap 4 --scale 0.25 --instances 1,2,4

For each instance count: fresh databases for every county (cloned from one migrated
template), each loaded with its generated county; the counties dealt round robin to the
instances; at "go" every storm county submits its county-wide red imminent warning and the
harness measures, from the provider's own clock (bench/provider_proc.py, its own process),
when the last SMS of all of them was accepted. Baseline in the same run: the official SDK's
200-number batches from one process to the same provider. Loudspeakers are not part of this
run (bench/bench_speakers.py measures one county's broadcast against the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.w1 import CB, Provider, raw_sdk_batch  # noqa: E402
from devtools.workloads import load_county, w100  # noqa: E402
from warnd.db.engine import Database, upgrade  # noqa: E402
from warnd.logging import configure_logging  # noqa: E402


def say(*what: object) -> None:
    print(time.strftime("%H:%M:%S"), *what, file=sys.stderr, flush=True)


def admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(sql)  # type: ignore[arg-type]


async def one(args: argparse.Namespace, n: int, provider: Provider, tpl: str, run: str) -> dict[str, Any]:
    province = w100(args.seed, args.counties, args.overlap, args.scale)
    storms = province.overlapping
    base = args.database.rsplit("/", 1)[0]
    now = datetime.now(UTC)
    counties = []
    say(f"{n} instance(s): loading {len(province.counties)} county databases")
    for plan in province.counties:
        name = f"warnd_w100_{run}_{plan.code}"
        admin(args.database, f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
        db = Database(f"{base}/{name}")
        await load_county(db, plan.workload(now), now)
        await db.close()
        counties.append({"code": plan.code, "name": plan.shape.name, "url": f"{base}/{name}"})
    tencent = provider.tencent_cfg().model_dump()
    tencent["callback_token"] = CB
    procs = []
    try:
        for i in range(n):
            mine = counties[i::n]
            p = subprocess.Popen(  # noqa: ASYNC220 (start-up, before the measured part)
                [sys.executable, str(ROOT / "bench" / "w100_instance.py")], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(json.dumps({"counties": mine, "storms": storms, "tencent": tencent, "run": run,
                                      "pool": [args.pool_size, args.max_overflow]}) + "\n")
            p.stdin.flush()
            procs.append(p)
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"an instance did not start: {line!r}")
        before, _ = await provider.count()
        t0 = time.time()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        deliveries = 0
        for p in procs:
            assert p.stdout is not None
            deliveries += sum(json.loads(p.stdout.readline()).values())
        got = await provider.wait(before + deliveries, before)
        sent = got["count"] - before
        seconds = got["last"] - t0 if got["last"] else float("nan")
        return {"instances": n, "storm_counties": len(storms), "messages": sent, "seconds": round(seconds, 3),
                "msgs_per_s": round(sent / seconds, 1)}
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for c in counties:
            admin(args.database, f'DROP DATABASE IF EXISTS "{c["url"].rsplit("/", 1)[1]}" WITH (FORCE)')


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="PostgreSQL server (an admin database URL) on which the county databases are created")
    ap.add_argument("--counties", type=int, default=100)
    ap.add_argument("--overlap", type=int, default=10)
    ap.add_argument("--scale", type=float, default=1.0, help="county size relative to W1 (villages, speakers)")
    ap.add_argument("--instances", default="1,2,4")
    ap.add_argument("--seed", type=int, default=631)
    ap.add_argument("--pool-size", type=int, default=3, help="[database] pool_size of each county's engine")
    ap.add_argument("--max-overflow", type=int, default=2, help="[database] max_overflow of each county's engine "
                    "(counties × (both) must stay under the server's max_connections)")
    args = ap.parse_args()
    configure_logging(level=40)
    run = uuid.uuid4().hex[:6]
    tpl = f"warnd_w100_tpl_{run}"
    admin(args.database, f'CREATE DATABASE "{tpl}"')
    upgrade(args.database.rsplit("/", 1)[0] + f"/{tpl}")
    provider = Provider()
    results = []
    try:
        officials = sum(len(c.workload(datetime.now(UTC)).people) for c in w100(
            args.seed, args.counties, args.overlap, args.scale).counties[:1])
        raw = await raw_sdk_batch(provider, max(officials * args.overlap, 1000))
        for n in [int(x) for x in args.instances.split(",")]:
            r = await one(args, n, provider, tpl, f"{run}{n}")
            r["vs_raw_sdk_batch"] = round(r["msgs_per_s"] / raw, 4)
            say(json.dumps(r))
            results.append(r)
    finally:
        await provider.close()
        admin(args.database, f'DROP DATABASE IF EXISTS "{tpl}" WITH (FORCE)')
    print(json.dumps({"workload": "W100", "counties": args.counties, "overlapping": args.overlap, "scale": args.scale,
                      "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                      "raw_sdk_batch_msgs_per_s": round(raw, 1), "runs": results}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
