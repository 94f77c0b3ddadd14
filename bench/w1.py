"""Benchmark W1, "one county storm" (devtools/workloads.py), against the raw transports in the
same run, on SQLite or PostgreSQL.

    .venv/bin/python bench/w1.py --database sqlite [--runs 3] [--no-speakers] [--no-public] [--smoke]
    .venv/bin/python bench/w1.py --database postgresql://postgres@127.0.0.1:5432/postgres

The SMS provider (the local Tencent Cloud SMS API server) and the simulated officials who
answer through its reply callback run in their own process (bench/provider_proc.py), so the
figures measure warnd; the accept times come from that process's clock. warnd runs here: the
real App, its HTTP server and engine modules, on a manual clock (deadlines fall when the
harness moves it), the database durable (SQLite synchronous=FULL). W1's 100,000 public
recipients are a generated list (+86137…, devtools/demo/public_list.py) imported through
`warnd public import`'s importer before the engine starts; [public] is enabled with the shipped
policy (the imminent step of any colour reaches the public lists of the area) and per-number
budgets, the Tencent budget's qps lifted (--public-qps) so that the provider's limit (by default
the channel's 3,000/s) is not what is measured. The provider process tells officials' SMS
(+86139…) from public ones by number.

Each figure is printed beside a baseline measured in the same run, and as the ratio to it:

  first_message     ingest POST → first official's SMS accepted by the provider (p50/p99 over
                    small warnings; each also texts its village's public) vs one bare HTTP
                    round trip to the provider process (p50)
  post_answer       the POST's own answer time (planning happens inside the request)
  imminent_fanout   county-wide imminent step: POST → every official's SMS accepted
                    (imminent_first_sent_s, imminent_all_sent_s), msgs/s vs the official
                    SDK's 200-number batches to the same provider (raw_sdk_batch)
  public_fanout     the same step's public side: POST → every public SMS accepted
                    (public_first_sent_s, public_all_sent_s; planning included), msgs/s vs
                    raw_sdk_batch; public_send_msgs_per_s from the first public SMS to the
                    last. Whether the public fan-out delays officials: compare
                    imminent_all_sent_s with a --no-public run's, and with public_first_sent_s
  confirmations     70 % of officials answer 收到 through the real reply webhook, replies/s vs
                    a raw batched INSERT through the same database stack (raw_insert)
  escalation        the clock passes every silent official's deadline at once (as in a storm:
                    one step's calls share their deadline): deadline → each escalation SMS
                    accepted by the provider (lateness p50/p99), msgs/s vs raw_sdk_batch, and
                    messages per provider request
  speakers          bench/bench_speakers.py: broadcast to 4,365 loudspeakers vs a raw aiomqtt
                    publish/ack loop to the same broker (its own processes)
  peak memory       ru_maxrss of this process (warnd + the harness)

Medians over --runs; the machine is named in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from sqlalchemy import func, insert
from sqlmodel import col, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channels.base import OutboundMessage  # noqa: E402
from devtools.benchkit import (  # noqa: E402
    UNLIMITED_QPS,
    bench_public_cfg,
    raw_insert,
    tencent_cfg,
    tencent_channel,
)
from devtools.benchkit import raw_sdk_batch as sdk_batch  # noqa: E402
from devtools.demo.capgen import cap_xml  # noqa: E402
from devtools.demo.public_list import import_generated_list, public_phone  # noqa: E402
from devtools.workloads import CountyWorkload, load_county, w1  # noqa: E402
from warnd.api.app import make_app  # noqa: E402
from warnd.app import App  # noqa: E402
from warnd.clock import ManualClock  # noqa: E402
from warnd.config import (  # noqa: E402
    ApiCfg,
    County,
    DatabaseCfg,
    PublicCfg,
    ServerCfg,
    Settings,
    SmsCfg,
    TencentCfg,
)
from warnd.core.domain import DeliveryState, Purpose  # noqa: E402
from warnd.db.engine import Database, upgrade  # noqa: E402
from warnd.db.models import Alert, Call, Delivery, Event, Person, PublicTarget  # noqa: E402
from warnd.logging import configure_logging  # noqa: E402

CB = "bench-callback-token-0123"
TOKEN = "bench-api-token-0123456789"
COUNTY = "431222"
OFFICIALS = "+86139"  # the generated officials' numbers (devtools/demo/county.py Phones)
PUBLIC = public_phone(0)[:6]  # the generated public list's numbers (+86137…)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(*what: object) -> None:
    print(time.strftime("%H:%M:%S"), *what, file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Provider:
    """bench/provider_proc.py in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "provider_proc.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        self.info: dict[str, str] = json.loads(self.proc.stdout.readline())
        self.base = self.info["base_url"]
        self.http: aiohttp.ClientSession | None = None
        self.timeout = 600

    def tencent_cfg(self) -> TencentCfg:
        return tencent_cfg(self.info, CB)

    async def session(self) -> aiohttp.ClientSession:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900))
        return self.http

    async def wait(self, count: int, since: int, **flags: str) -> dict[str, Any]:
        http = await self.session()
        params = {"count": count, "since": since, "timeout": self.timeout, **flags}
        async with http.get(f"{self.base}/bench/wait", params=params) as r:
            out: dict[str, Any] = await r.json()
            return out

    async def count(self) -> tuple[int, int]:
        d = await self.wait(0, 0)
        return int(d["count"]), int(d["requests"])

    async def replies(self, url: str, phones: list[str]) -> dict[str, Any]:
        http = await self.session()
        async with http.post(f"{self.base}/bench/replies", json={"url": url, "phones": phones, "text": "收到",
                                                                "concurrency": 64}) as r:
            out: dict[str, Any] = await r.json()
            return out

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- baselines ---------------------------------------------------------------------------------
async def bare_round_trip(provider: Provider, n: int = 200) -> float:
    http = await provider.session()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        async with http.get(f"{provider.base}/bench/ping") as r:
            await r.read()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def raw_sdk_batch(provider: Provider, n: int) -> float:
    """The SDK's 200-number batches, all at once, to the provider process (devtools/benchkit.py)."""
    return await sdk_batch(provider.tencent_cfg(), n)


async def raw_sdk_single(provider: Provider, n: int, concurrency: int = 32) -> float:
    """Messages/s when each text is its own SendSms request (a per-recipient text), through
    the same channel object (its SDK thread pool) and warnd's [delivery] concurrency."""
    ch = tencent_channel(provider.tencent_cfg())
    now = datetime.now(UTC)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await ch.send(OutboundMessage(f"single:{uuid.uuid4().hex[:8]}:{i}", f"+86136{i:08d}",
                                          f"【替补叫应】基准测试{i}未确认临灾预警。", now))

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    rate = n / (time.perf_counter() - t)
    await ch.close()
    return rate


def rung_figures(name: str, got: dict[str, Any], t_due: float, req_before: int) -> dict[str, float]:
    """A rung's messages as the provider accepted them: lateness from the deadline (p50/p99),
    rate, and messages per provider request."""
    times = got["times"]
    out: dict[str, float] = {f"{name}_messages": len(times)}
    if times:
        lateness = [t - t_due for t in times]
        out[f"{name}_lateness_p50_s"], out[f"{name}_lateness_p99_s"] = pct(lateness, 50), pct(lateness, 99)
        out[f"{name}_msgs_per_s"] = len(times) / max(times[-1] - t_due, 1e-6)
        out[f"{name}_msgs_per_request"] = len(times) / max(got["requests"] - req_before, 1)
    return out


async def durable_commit(db: Database, n: int = 30) -> float:
    """Seconds (median) for one row INSERT and its commit through the same durable stack: the
    floor under ingest → first message, which must store the warning before it sends."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        async with db.session() as s, s.begin():
            await (await s.connection()).execute(insert(Event), [dict(at=datetime.now(UTC), kind="bench",
                                                                      data={"i": i})])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- one run -----------------------------------------------------------------------------------
class Database_:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL database."""

    def __init__(self, spec: str, folder: Path):
        self.spec = spec
        self.name = ""
        if spec == "sqlite":
            self.url = f"sqlite:///{folder / 'w1.db'}"
        else:
            self.name = f"warnd_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(spec, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')  # type: ignore[arg-type]
            self.url = spec.rsplit("/", 1)[0] + f"/{self.name}"
        upgrade(self.url)

    def drop(self) -> None:
        if self.name:
            with psycopg.connect(self.spec, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')  # type: ignore[arg-type]


async def preload_pending(db: Database, n: int, now: datetime) -> None:
    """`n` open calls that are not this storm's: a province's other warnings, pending with
    deadlines a day away, so every query of the run works against a table that size. They
    belong to `n` inactive people (outside the county's roster), so no reply of the storm's
    officials confirms them and no rung of theirs falls due."""
    if n <= 0:
        return
    async with db.session() as s, s.begin():
        conn = await s.connection()
        alert = (await conn.execute(insert(Alert).returning(col(Alert.id)), [dict(
            sender="bench-background", identifier="W1-PENDING", sent=now, status="Actual", msg_type="Alert",
            references=[], source="bench", hazard="rainstorm", colour="orange", step="warning",
            region_codes=[], unknown_codes=[], channel_texts={}, state="active", received_at=now,
            description="", instruction="", raw_xml="",
            expires=now + timedelta(days=2))])).scalar_one()
        for start in range(0, n, 20_000):
            size = min(20_000, n - start)
            people = (await conn.execute(insert(Person).returning(col(Person.id)), [dict(
                key=f"bench-pending-{i}", name=f"待办{i}", phone=f"+86170{i:08d}", role="grid_worker",
                region_code=f"{COUNTY}999", active=False, updated_at=now) for i in range(start, start + size)]
            )).scalars().all()
            await conn.execute(insert(Call), [dict(
                alert_id=alert, person_id=pid, step="warning", role="grid_worker", region_code=f"{COUNTY}999",
                ladder="standard", channels=["sms"], state="open", level=0, fence=0, short_code=f"P{pid}",
                created_at=now, deadline=now + timedelta(days=1), window_seconds=1800) for pid in people])


async def one_run(spec: str, work: CountyWorkload, provider: Provider, small: int,
                  public_qps: float | None, pending: int = 100_000) -> dict[str, float]:
    """One run; `public_qps` None: public dissemination off (no list, [public] enabled = false)."""
    folder = Path(tempfile.mkdtemp(prefix="warnd-w1-"))
    dbx = Database_(spec, folder)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    public = bench_public_cfg(public_qps) if public_qps is not None else PublicCfg(enabled=False)
    settings = Settings(county=County(code=COUNTY), database=DatabaseCfg(url=dbx.url, durable=True),
                        server=ServerCfg(port=port, public_base_url=base), api=ApiCfg(tokens=(TOKEN,)),
                        sms=SmsCfg(provider="tencent", tencent=provider.tencent_cfg()), public=public)
    app = App.build(settings, clock=clock)
    out: dict[str, float] = {}
    try:
        await load_county(app.db, work, clock.now())
        await preload_pending(app.db, pending, clock.now())
        out["pending_calls_preloaded"] = pending
        if public.enabled:
            say("public list")
            listed, took = await import_generated_list(app.db, folder / "public.csv", work.public_recipients,
                                                       now=clock.now(), seed=work.seed)
            assert listed.ok and listed.added == work.public_recipients, listed.text()
            out["public_listed"] = listed.added
            out["public_import_s"] = took
        await app.start()
        runner = web.AppRunner(make_app(app), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900))
        auth = {"Authorization": f"Bearer {TOKEN}"}

        say("baselines")
        out["bare_round_trip_ms"] = await bare_round_trip(provider) * 1000
        # A burst of ~27 requests is over in ~0.1 s: one hiccup halves it. Median of five.
        out["raw_sdk_batch_msgs_per_s"] = statistics.median([await raw_sdk_batch(provider, len(work.people))
                                                            for _ in range(5)])
        out["raw_insert_rows_per_s"] = await raw_insert(app.db, len(work.people))
        out["durable_commit_ms"] = await durable_commit(app.db) * 1000
        out["raw_sdk_single_msgs_per_s"] = await raw_sdk_single(provider, 1000)

        async def post(body: bytes) -> tuple[dict[str, Any], float, float]:
            t0 = time.time()
            async with http.post(f"{base}/api/v1/alerts", data=body, headers=auth) as r:
                data = await r.json()
                assert r.status == 201, data
            return data, t0, time.time() - t0

        say("small warnings")
        # ingest → first message, on small warnings (one village each)
        # one village per township: no official is called by two of them
        villages = [r.code for r in work.regions if r.level == "village" and r.code.endswith("200")]
        firsts, answers = [], []
        for i in range(min(small, len(villages))):
            before, _ = await provider.count()
            now = clock.now()
            data, t0, took = await post(cap_xml(f"W1-SMALL-{i}", now, now + timedelta(hours=1), "黄色",
                                                "1小时内将出现暴雨", "请组织转移。", [villages[i % len(villages)]],
                                                step="imminent"))
            got = await provider.wait(1, before, prefix=OFFICIALS)
            firsts.append((got["first"] - t0) * 1000)
            answers.append(took * 1000)
            await app.runner.settle(120)
        await app.runner.settle(120)
        # Past the per-recipient spacing ([delivery] recipient_min_interval_seconds), so the
        # officials of those villages are not held back in the county-wide step (and well
        # before any deadline of the small warnings).
        await clock.advance(timedelta(seconds=30))
        await app.runner.settle(120)
        out["first_message_p50_ms"], out["first_message_p99_ms"] = pct(firsts, 50), pct(firsts, 99)
        out["post_answer_p50_ms"] = pct(answers, 50)

        say("imminent step")
        # the county-wide imminent step (red, every official; every public number of the county)
        before, req_before = await provider.count()
        now = clock.now()
        data, t0, took = await post(cap_xml("W1-IMMINENT", now, now + timedelta(hours=1), "红色",
                                            "1小时内将出现特大暴雨，山洪风险极高", "请立即组织危险区群众转移，鸣锣吹哨，敲门入户。",
                                            [f"{COUNTY}000000"], step="imminent"))
        got = await provider.wait(data["deliveries"], before, prefix=OFFICIALS)
        out["imminent_messages"] = got["matched"]
        out["imminent_post_answer_ms"] = took * 1000
        out["imminent_first_sent_s"] = got["first"] - t0
        out["imminent_all_sent_s"] = got["last"] - t0
        out["imminent_msgs_per_s"] = out["imminent_messages"] / out["imminent_all_sent_s"]
        if not public.enabled:
            out["imminent_msgs_per_request"] = out["imminent_messages"] / max(got["requests"] - req_before, 1)
        await app.runner.settle(1800)  # the public side is planned and sent meanwhile
        alert_id = data["id"]
        if public.enabled:
            async with app.db.read() as s:
                decisions = dict((await s.exec(select(PublicTarget.decision, func.count()).where(
                    PublicTarget.alert_id == alert_id).group_by(col(PublicTarget.decision)))).all())
                sent = (await s.exec(select(func.count()).select_from(Delivery).where(
                    Delivery.alert_id == alert_id, Delivery.purpose == Purpose.PUBLIC,
                    col(Delivery.state).in_([DeliveryState.SENT, DeliveryState.DELIVERED])))).one()
            pub = await provider.wait(sent, before, prefix=PUBLIC)
            everything = await provider.wait(0, before)
            out["public_targeted"] = sum(decisions.values())
            out["public_not_sent"] = out["public_targeted"] - decisions.get("send", 0)
            out["public_messages"] = pub["matched"]
            out["public_first_sent_s"] = pub["first"] - t0
            out["public_all_sent_s"] = pub["last"] - t0
            out["public_msgs_per_s"] = pub["matched"] / out["public_all_sent_s"]
            out["public_send_msgs_per_s"] = pub["matched"] / max(pub["last"] - pub["first"], 1e-6)
            # seconds the public outbox waited in this run for the provider's rate ([public.budgets] qps): 0
            # unless --public-qps is what limits the figures above
            assert app.public_outbox is not None
            out["public_paced_wait_s"] = sum(getattr(ch, "waited", 0.0) for ch in app.public_outbox.channels.values())
            # SMS per provider request over the whole step (officials' and public texts differ,
            # so no request carries both)
            out["imminent_msgs_per_request"] = (everything["count"] - before) / max(
                everything["requests"] - req_before, 1)

        say("confirmations")
        # confirmations through the real reply webhook, from the provider's process
        answers_ = {a.phone: a for a in work.answers("imminent")}
        async with app.db.read() as s:
            called = set((await s.exec(select(Person.phone).join(Call, col(Call.person_id) == Person.id).where(
                Call.alert_id == alert_id))).all())
        phones = sorted(ph for ph in called if ph in answers_ and answers_[ph].confirms)
        r = await provider.replies(f"{base}/webhooks/tencent/sms/{CB}/reply", phones)
        await app.runner.settle(300)
        async with app.db.read() as s:
            confirmed = (await s.exec(select(func.count()).select_from(Call).where(
                Call.alert_id == alert_id, Call.state == "confirmed"))).one()
        out["confirmations_sent"] = len(phones)
        out["confirmations_recorded"] = confirmed
        out["called"] = len(called)
        out["confirmations_per_s"] = len(phones) / r["seconds"]

        say("escalation")
        # every silent official's deadline passes at once: escalation → provider
        before, req_before = await provider.count()
        async with app.db.read() as s:
            open_calls = (await s.exec(select(func.count()).select_from(Call).where(
                Call.alert_id == alert_id, Call.state == "open"))).one()
            first_deadline = (await s.exec(select(func.min(Call.deadline)).where(
                Call.alert_id == alert_id, Call.state == "open"))).one()
        assert first_deadline is not None
        t_due = time.time()
        await clock.advance(first_deadline - clock.now())  # the first rung of every silent call is now due
        await app.runner.settle(600)
        out["escalation_open_calls"] = open_calls
        out |= rung_figures("escalation", await provider.wait(0, before, times="1"), t_due, req_before)

        say("deputy rung")
        # the next rung: each silent official's deputy is told who stayed silent — a text per
        # official (it names them), so one provider request each
        before, req_before = await provider.count()
        async with app.db.read() as s:
            next_deadline = (await s.exec(select(func.min(Call.deadline)).where(
                Call.alert_id == alert_id, Call.state == "open"))).one()
        if next_deadline is not None:
            t_due = time.time()
            await clock.advance(next_deadline - clock.now())
            await app.runner.settle(600)
            out |= rung_figures("deputy", await provider.wait(0, before, times="1"), t_due, req_before)
        await http.close()
        await runner.cleanup()
    finally:
        await app.stop()
        dbx.drop()
    return out


def speakers_run(spec: str, count: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="warnd-w1-spk-"))
    dbx = Database_(spec, folder)
    try:
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_speakers.py"), "--count", str(count),
                            "--database", dbx.url], capture_output=True, text=True, timeout=1800, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    finally:
        dbx.drop()
    last = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not last:
        return {"speakers_error": 1.0}
    d = json.loads(last[-1])
    return {"speakers_raw_s": d["raw_s"], "speakers_warnd_s": d["warnd_s"], "speakers_ratio": d["ratio"]}


RATIOS = {
    "first_message_p50_vs_round_trip": ("first_message_p50_ms", "bare_round_trip_ms"),
    "first_message_p99_vs_round_trip": ("first_message_p99_ms", "bare_round_trip_ms"),
    "first_message_p50_vs_durable_commit": ("first_message_p50_ms", "durable_commit_ms"),
    "deputy_vs_raw_sdk_single": ("deputy_msgs_per_s", "raw_sdk_single_msgs_per_s"),
    "imminent_fanout_vs_raw_sdk_batch": ("imminent_msgs_per_s", "raw_sdk_batch_msgs_per_s"),
    "confirmations_vs_raw_insert": ("confirmations_per_s", "raw_insert_rows_per_s"),
    "escalation_vs_raw_sdk_batch": ("escalation_msgs_per_s", "raw_sdk_batch_msgs_per_s"),
    "public_fanout_vs_raw_sdk_batch": ("public_msgs_per_s", "raw_sdk_batch_msgs_per_s"),
}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default="sqlite", help="sqlite, or a PostgreSQL URL of a database to create "
                    "the run's databases from (postgresql://postgres@127.0.0.1:5432/postgres)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=631)
    ap.add_argument("--small", type=int, default=15, help="small warnings for ingest → first message")
    ap.add_argument("--no-speakers", action="store_true")
    ap.add_argument("--pending", type=int, default=100_000,
                    help="open calls of other warnings in the database during the run (a province's load)")
    ap.add_argument("--no-public", action="store_true", help="no public list, [public] enabled = false "
                    "(officials' figures without the public fan-out, for comparison)")
    ap.add_argument("--public-qps", type=float, default=UNLIMITED_QPS, help="[public.budgets.tencent] qps "
                    "(default: high enough that the provider's limit is not what is measured)")
    ap.add_argument("--smoke", action="store_true", help="a tiny county, one run, no speakers: checks the harness")
    args = ap.parse_args()
    configure_logging(level=40)
    sys.setswitchinterval(0.0005)
    work = w1(args.seed)
    if args.smoke:
        from devtools.demo.county import CountyShape
        from devtools.workloads import county_workload
        work = county_workload(args.seed, datetime.now(UTC), CountyShape(townships=2, villages_per_township=3),
                               speakers=10, public=100)
        args.runs, args.small, args.no_speakers, args.pending = 1, 3, True, 1000
    provider = Provider()
    runs: list[dict[str, float]] = []
    try:
        for i in range(args.runs):
            r = await one_run(args.database, work, provider, args.small,
                              None if args.no_public else args.public_qps, args.pending)
            say("run", i + 1, json.dumps({k: round(v, 3) for k, v in r.items()}))
            if not args.no_speakers:
                r |= speakers_run(args.database, len(work.speakers))
            r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            runs.append(r)
            print(f"run {i + 1}: " + json.dumps({k: round(v, 3) for k, v in r.items()}), file=sys.stderr, flush=True)
    finally:
        await provider.close()
    median = {k: statistics.median(r[k] for r in runs if k in r) for k in runs[0]}
    ratios = {}
    for name, (fig, base) in RATIOS.items():
        if fig in median and base in median:
            ratios[name] = median[fig] / median[base]
    report = {
        "workload": "W1" if not args.smoke else "smoke", "seed": args.seed, "counts": work.counts(),
        "public": not args.no_public,
        "database": "sqlite" if args.database == "sqlite" else "postgresql",
        "runs": len(runs), "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
                                      f"Python {platform.python_version()}",
        "median": {k: round(v, 3) for k, v in median.items()},
        "ratios": {k: round(v, 4) for k, v in ratios.items()},
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
