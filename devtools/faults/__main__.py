"""`python -m devtools.faults [--quick] [--seed N] [--only NAME] [--json FILE]`: play the fault
scenarios, each on a fresh PostgreSQL database, and print a Markdown table (docs/faults.md).

The database server is `WARND_TEST_PG` (default postgresql://postgres@127.0.0.1:5432/postgres);
each scenario gets a database of its own, migrated, dropped afterwards. Exit status 1 when
any scenario lost, duplicated or double-fired anything, or left a call open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

from devtools.faults.harness import TABLE_HEAD, Report, Scenario, run
from devtools.faults.providers import late_and_broken, outage, provider_500s
from warnd.db.engine import upgrade

PG_ADMIN = os.environ.get("WARND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def scenarios(quick: bool, seed: int) -> list[Scenario]:
    if quick:
        return [Scenario("two instances, kills", instances=2, kills=2, seed=seed)]

    def big(name: str, **kw: Any) -> Scenario:
        return Scenario(name, villages=24, warnings=4, post_seconds=30.0, settle_timeout=240.0, **kw)

    return [
        big("one instance, kills", instances=1, kills=8, seed=seed),
        big("two instances, kills", instances=2, kills=10, seed=seed + 1),
        big("three instances, kills", instances=3, kills=12, seed=seed + 2),
        big("two instances, kills, 5 % provider 500s", instances=2, kills=6, seed=seed + 3,
            provider=provider_500s(0.05)),
        big("two instances, kills, 3 % answered late, 3 % 500s", instances=2, kills=6, seed=seed + 4,
            provider=late_and_broken(0.03, 0.03)),
        big("one instance, kills, a 10-minute outage", instances=1, kills=4, seed=seed + 5,
            provider=outage(after=3.0, seconds=6.0)),
    ]


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


async def play(sc: Scenario, folder: Path) -> Report:
    name = f"warnd_faults_{uuid.uuid4().hex[:10]}"
    base, _, _ = PG_ADMIN.rpartition("/")
    url = f"{base}/{name}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, url)
        return await run(sc, url, folder)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.faults", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the short runs of the test suite")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", help="run only scenarios whose name contains this")
    p.add_argument("--json", type=Path, help="also write the reports as JSON here")
    p.add_argument("--keep", type=Path, help="keep logs (serve-*.log, accepted.jsonl) under this folder")
    args = p.parse_args(argv)
    chosen = [sc for sc in scenarios(args.quick, args.seed) if not args.only or args.only in sc.name]
    reports: list[Report] = []
    print(TABLE_HEAD, flush=True)
    for n, sc in enumerate(chosen):
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.keep / f"{n}") if args.keep else Path(tmp)
            report = await play(sc, folder)
        reports.append(report)
        print(report.row(), flush=True)
        for note in report.notes:
            print(f"  {sc.name}: {note}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2), encoding="utf-8")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
