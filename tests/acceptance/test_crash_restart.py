"""Durability: a real `warnd serve` process is SIGKILLed mid-fan-out and mid-escalation and
restarted on the same database and clock timeline.

The Tencent simulator accepts a SendSms batch and then holds its HTTP answer, so the engine
is killed in the exact window where the provider has the batch but the engine has not
recorded it (rows left in `sending`, to be reconciled through PullSmsSendStatus and the
SessionContext). Most officials answer inside that window (their phones have the SMS).
After the restart the others answer or stay silent, and the engine is killed again while the
first rung goes out: one resend is accepted but unanswered, one is held *unprocessed* (the
provider never took it: it must be sent again). After each restart every official must have
received exactly one warning, and every deadline of the 叫应 ladder must have fired exactly
once per call: no duplicate escalation events, no duplicate resend / deputy / superior SMS,
silent calls in the duty room and confirmed calls left alone.

The policy is the default imminent one with a drill timetable (confirm within 15 minutes,
3 minutes per rung) so that, at 100× clock speed, replies never race the confirm window
even on a loaded machine, while the whole ladder still runs in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from sqlmodel import col, select

from channels.base import ChannelBase, OutboundMessage, SendReceipt
from devtools.demo.capgen import cap_xml
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.clock import ManualClock, ScaledClock
from warnd.config import DeliveryCfg
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery, Event, Person, Region
from warnd.engine.outbox import Outbox

T = TypeVar("T")

TOKEN = "crash-test-token-0123456789"
CB = "crash-callback-secret-0123456789"
COUNTY, TOWNSHIP = "431222", "431222100"
VILLAGES = 12
SPEED = 100.0  # clock: 15 min confirm window = 9 s, each rung 3 min = 1.8 s
ROLES = ("village_secretary", "village_head", "grid_worker", "transfer_officer", "group_leader")
DEPUTY = {"village_secretary": "village_head", "village_head": "village_secretary",
          "grid_worker": "village_head", "transfer_officer": "village_secretary",
          "group_leader": "transfer_officer"}
KINDS = {"【临灾预警】": "warning", "【再次提醒·请确认】": "resend", "【替补叫应】": "deputy",
         "【上级督办】": "superior"}
LADDER = [(1, "call_escalated", "resend"), (2, "call_escalated", "deputy"),
          (3, "call_escalated", "superior"), (4, "call_to_duty_room", "duty_room")]
POLICY = """
channels = ["sms"]

[ladders.drill]
rungs = [
  { action = "resend", wait_minutes = 3 },
  { action = "deputy", wait_minutes = 3 },
  { action = "superior", wait_minutes = 3 },
  { action = "duty_room" },
]

[[rules]]
hazards = "*"
step = "imminent"

[[rules.targets]]
level = "village"
roles = ["village_secretary", "village_head", "grid_worker"]
optional_roles = ["transfer_officer"]
confirm_minutes = 15
ladder = "drill"

[[rules.targets]]
level = "group"
roles = ["group_leader"]
confirm_minutes = 15
ladder = "drill"
"""


def phone(village: int, role: str) -> str:
    return f"+86139{village:04d}{ROLES.index(role) + 1:04d}"


def silent(village: int, role: str) -> bool:
    """Who never answers: grid workers and group leaders of villages 0-4, the transfer
    officers of 0-1 (the group leaders' deputies) and the village head of 0 (the grid
    worker's deputy). Superiors (village secretaries) all answer for themselves."""
    return ((village < 5 and role in ("grid_worker", "group_leader"))
            or (village < 2 and role == "transfer_officer") or (village == 0 and role == "village_head"))


WARNED = col(Delivery.purpose) != "duty_notice"  # not the duty room's notices of a failing provider
NOTICE = "【值班室提醒】"


def kind_of(body: str) -> str:
    return next((k for prefix, k in KINDS.items() if body.startswith(prefix)), "other")


def code_of(body: str) -> str | None:
    m = re.search(r"编号(\w+)", body)
    return m.group(1) if m else None


async def seed_roster(url: str) -> None:
    now = datetime.now(UTC)
    db = Database(url)
    try:
        async with db.session() as s, s.begin():
            s.add(Region(code=COUNTY, name="沅陵县", level="county"))
            s.add(Region(code=TOWNSHIP, name="官庄镇", level="township", parent_code=COUNTY))
            s.add(Person(key="duty", name="值班员", phone="+8613700000001", role="duty_officer",
                         region_code=COUNTY, updated_at=now))
            s.add(Person(key="twp-head", name="刘镇长", phone="+8613700000002", role="township_head",
                         region_code=TOWNSHIP, updated_at=now))
            for v in range(VILLAGES):
                village = f"{TOWNSHIP}{200 + v:03d}"
                group = f"{village}001"
                s.add(Region(code=village, name=f"{v}号村", level="village", parent_code=TOWNSHIP))
                s.add(Region(code=group, name=f"{v}号村一组", level="group", parent_code=village))
                for role in ROLES:
                    s.add(Person(key=phone(v, role), name=f"{v}号村{role}", phone=phone(v, role), role=role,
                                 region_code=group if role == "group_leader" else village,
                                 deputy_key=phone(v, DEPUTY[role]), updated_at=now))
    finally:
        await db.close()


async def cli_token(config: Path) -> str:
    """A duty officer's personal API token, made with the real `warnd user` commands."""

    async def warnd(*args: str, stdin: bytes = b"") -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warnd.cli", "--config", str(config), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    await warnd("user", "add", "duty", "--role", "duty_officer", stdin=b"correct-horse-battery\n")
    return (await warnd("user", "token", "create", "duty")).strip()


async def query_db(db: Database, stmt: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.exec(stmt)).all())


async def query(url: str, stmt: Any) -> list[Any]:
    db = Database(url)
    try:
        return await query_db(db, stmt)
    finally:
        await db.close()


def free_port() -> int:
    """A free port below the kernel's ephemeral range: warnd serve binds it again after each
    restart, and an ephemeral port could meanwhile be taken by any outgoing connection."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(low - 12000, 1024), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float) -> T:  # noqa: ASYNC109
    """Poll the HTTP API or the database until `probe` returns something (not None/False)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)  # polling interval only; the bound is `timeout`


@dataclass
class Serve:
    """One `warnd serve` child process."""

    config: Path
    port: int
    clock_spec: str
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "warnd.cli", "--config", str(self.config), "serve",
                "--port", str(self.port), "--clock", self.clock_spec,
                stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                while b"warnd serving on" not in (line := await self.proc.stdout.readline()):
                    if not line:
                        raise AssertionError(f"warnd serve exited:\n{self.log.read_text()[-3000:]}")
        except TimeoutError:
            raise AssertionError(f"warnd serve did not start:\n{self.log.read_text()[-3000:]}") from None

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        os.kill(proc.pid, sig)
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.fixture
async def sim() -> AsyncIterator[TencentSmsApi]:
    api = TencentSmsApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.mark.slow
async def test_sigkill_mid_fanout_and_mid_escalation_sends_each_message_once(
    db_url: str, sim: TencentSmsApi, tmp_path: Path
) -> None:
    started = time.monotonic()
    await seed_roster(db_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    # Per-call resend texts (the call's code in each, as an operator may choose): every rung
    # SMS is its own provider request, so a kill can fall between two of them.
    defaults = (files("warnd") / "defaults" / "templates.toml").read_text(encoding="utf-8")
    per_call = defaults.replace("请立即回复1或“收到”确认。", "请立即回复1或“收到”确认（编号{code}）。")
    assert per_call != defaults
    (tmp_path / "templates.toml").write_text(per_call, encoding="utf-8")
    (tmp_path / "warnd.toml").write_text(f"""
[county]
code = "{COUNTY}"
[database]
url = "{db_url}"
[server]
host = "127.0.0.1"
port = {port}
public_base_url = "{base}"
[api]
tokens = ["{TOKEN}"]
[policy]
path = "{tmp_path / "policy.toml"}"
templates = "{tmp_path / "templates.toml"}"
[sms]
provider = "tencent"
[sms.tencent]
secret_id = "{sim.secret_id}"
secret_key = "{sim.secret_key}"
sdk_app_id = "{sim.sdk_app_id}"
sign_name = "{sim.sign_name}"
template_id = "100001"
endpoint = "{sim.base_url.removeprefix("http://")}"
callback_token = "{CB}"
timeout_seconds = 1  # the lease (automatic: 2 × 2 × 1 s + 2 s, × SPEED) outlives any send in flight
[delivery]
lease_margin_seconds = 2
""", encoding="utf-8")
    clock = ScaledClock(SPEED)
    serve = Serve(tmp_path / "warnd.toml", port, clock.spec(), tmp_path / "serve.log")
    auth = {"Authorization": f"Bearer {await cli_token(tmp_path / 'warnd.toml')}"}
    reply_url = f"{base}/webhooks/tencent/sms/{CB}/reply"
    officials = {phone(v, r): (v, r) for v in range(VILLAGES) for r in ROLES}
    repliers = [p for p, (v, r) in officials.items() if not silent(v, r)]
    # Most answer while their SMS is still in doubt for the engine (they have it, the engine
    # has not recorded it yet); the rest of the villages with silent officials answer later.
    early = [p for p in repliers if officials[p][0] >= 5]
    late = [p for p in repliers if officials[p][0] < 5]
    timings: dict[str, float] = {}

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - started, 1)

    def warnings_by_phone() -> Counter[str]:
        return Counter(m.to for m in sim.messages if kind_of(m.body) == "warning")

    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> Any:
            async with http.get(base + path, headers=auth) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def calls_by_phone() -> dict[str, dict[str, Any]]:
            return {c["phone"]: c for c in (await get(f"/api/v1/alerts/{alert_id}/calls"))["calls"]}

        async def outbox_settled() -> dict[str, int] | None:
            states: dict[str, int] = (await get(f"/api/v1/alerts/{alert_id}"))["deliveries"]
            return None if states.get("pending") or states.get("sending") else states

        gate = asyncio.Semaphore(4)

        async def reply(p: str) -> None:
            async with gate:
                code, _ = await sim.send_reply(reply_url, p, "收到")
                assert code == 200

        async def replies(phones: list[str]) -> None:
            await asyncio.gather(*(reply(p) for p in phones))
            calls = await calls_by_phone()
            assert all(calls[p]["state"] == "confirmed" for p in phones)

        try:
            # -- 1. fan-out: the provider accepts the batch, its answer never arrives: kill -9.
            sim.hold_next_sends(True)
            await serve.start()
            mark("serving")
            now = clock.now()
            cap = cap_xml("CRASH-1", now, now + timedelta(hours=1), "黄色", "1小时内将出现暴雨",
                          "请立即组织危险区群众转移。", [TOWNSHIP], step="imminent")
            async with http.post(f"{base}/api/v1/alerts", data=cap, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                body = await r.json()
                assert r.status == 201, body
            alert_id = body["id"]
            assert body["calls"] == len(officials) == 60 and not body["gaps"]
            await sim.wait_until(lambda: sim.held == 1, timeout=30)
            assert len(sim.messages) == len(officials)  # one batch, accepted by the provider
            await replies(early)
            mark("early replies confirmed")
            await serve.kill()
            mark("killed in fan-out")
            await sim.release_held()
            # Killed in the window: the provider has the batch, the engine recorded nothing.
            # (The SDK timed out meanwhile: the batch is in doubt, and the duty room was told the
            # provider is failing; its notices are not the warnings counted here.)
            assert Counter(await query(db_url, select(Delivery.state).where(WARNED))) == {"sending": 60}

            # -- restart: the batch is found at the provider and recorded, not sent again.
            await serve.start()
            mark("restarted 1")
            settled = await until("the fan-out to be recorded", outbox_settled, 30)
            assert settled == {"sent": 60}
            mark("fan-out recorded")
            assert warnings_by_phone() == dict.fromkeys(officials, 1)
            recorded = Counter(await query(db_url, select(Event.kind).where(
                Event.kind.in_(["delivery_reconciled", "delivery_sent"]))))  # type: ignore[attr-defined]
            assert recorded == {"delivery_reconciled": 60}

            # -- 2. the other repliers answer; the silent ones escalate. Kill while rungs are
            # sent: the first resend is accepted but unanswered, the second never processed.
            sim.hold_next_sends(True, False)
            await replies(late)
            mark("late replies confirmed")
            calls = await calls_by_phone()
            assert {p for p, c in calls.items() if c["state"] == "confirmed"} == set(repliers)
            assert all(c["level"] == 0 for c in calls.values()), "a reply raced the confirm window"
            silent_calls = {c["id"] for p, c in calls.items() if p not in repliers}
            assert len(silent_calls) == 13
            await sim.wait_until(lambda: sim.held == 2, timeout=30)
            await serve.kill()
            mark("killed in escalation")
            await sim.release_held()
            assert len(await query(db_url, select(Delivery.id).where(Delivery.state == "sending", WARNED))) >= 2

            # -- restart: every overdue rung fires once, in order, up to the duty room.
            await serve.start()
            mark("restarted 2")

            async def silent_in_duty_room() -> bool:
                rows = (await get(f"/api/v1/alerts/{alert_id}/calls"))["calls"]
                return all(c["state"] == "duty_room" for c in rows if c["id"] in silent_calls)

            await until("the silent calls to reach the duty room", silent_in_duty_room, 30)
            await until("the outbox to drain", outbox_settled, 30)
            mark("ladder complete")
            final = await calls_by_phone()
        except BaseException:
            print(f"\ntimings {timings}; warnd serve log:\n{serve.log.read_text()[-5000:]}")
            raise
        finally:
            await serve.kill(signal.SIGTERM)
            await sim.release_held()

    # -- what the phones received ------------------------------------------------------
    assert warnings_by_phone() == dict.fromkeys(officials, 1)
    # Nobody got the same text twice (each escalation text names its call's short code).
    # (A provider failing twice is told twice: the duty room's notices are left out.)
    assert not {k: n for k, n in Counter((m.to, m.body) for m in sim.messages
                                         if not m.body.startswith(NOTICE)).items() if n > 1}
    got = Counter((m.to, kind_of(m.body), code_of(m.body)) for m in sim.messages
                  if kind_of(m.body) in ("resend", "deputy", "superior"))

    # -- what the database says --------------------------------------------------------
    phones = dict(await query(db_url, select(Person.id, Person.phone)))
    codes = dict(await query(db_url, select(Call.id, Call.short_code)))
    rungs = await query(db_url, select(Event.call_id, Event.kind, Event.data).where(
        Event.kind.in_(["call_escalated", "call_to_duty_room"])))  # type: ignore[attr-defined]
    fired = Counter((cid, data["level"]) for cid, _, data in rungs)
    assert not {k: n for k, n in fired.items() if n > 1}, "a rung fired twice"
    assert {cid for cid, _ in fired} == silent_calls  # repliers never escalated
    expected: Counter[tuple[str, str, str | None]] = Counter()
    for cid in silent_calls:
        ladder = sorted((data["level"], kind, data["action"]) for c, kind, data in rungs if c == cid)
        assert ladder == LADDER, (cid, ladder)
        for c, kind, data in rungs:
            if c == cid and kind == "call_escalated":
                assert len(data["recipients"]) == 1, data  # everyone has a deputy and a superior
                expected.update((phones[pid], data["action"], codes[cid]) for pid in data["recipients"])
    # Each rung's SMS reached its recipient exactly once: nothing lost, nothing twice.
    assert got == expected
    assert sum(expected.values()) == 3 * len(silent_calls)
    for p, c in final.items():
        want = ("confirmed", 0) if p in repliers else ("duty_room", 4)
        assert (c["state"], c["level"]) == want, (p, c)
    assert set(await query(db_url, select(Delivery.state).where(WARNED))) == {"sent"}
    # Both in-doubt branches ran after the second kill: found at the provider, and sent again.
    reconciled = await query(db_url, select(Event.id).where(Event.kind == "delivery_reconciled"))
    assert len(reconciled) > 60
    assert max(await query(db_url, select(Delivery.attempts).where(WARNED))) == 2
    mark("checked")
    print(f"crash-restart timings (s): {timings}")


class UnreachableSms(ChannelBase):
    """A channel whose provider cannot be asked (in-doubt lookups fail)."""

    kind = "sms"
    provider = "fake"

    def __init__(self) -> None:
        self.lookups = 0

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        raise AssertionError("an in-doubt message must not be sent before it is looked up")

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        self.lookups += 1
        raise ConnectionError("provider unreachable")

    async def close(self) -> None:
        pass


async def test_in_doubt_rows_wake_the_outbox_at_lease_expiry_and_failed_lookups_wait(db: Database) -> None:
    """A crashed sender's rows are due when their lease runs out (not when unrelated work
    arrives); a lookup that fails is retried after a back-off, not in a busy loop."""
    clock = ManualClock(datetime(2026, 7, 1, 2, 0, tzinfo=UTC))
    now = clock.now()
    cfg = DeliveryCfg()
    channel = UnreachableSms()
    outbox = Outbox(db, clock, {"sms": channel}, cfg)
    async with db.session() as s, s.begin():
        s.add(Delivery(idempotency_key="k1", person_id=1, channel="sms", purpose="warning",
                       to_address="+8613900000001", body="x", state="sending", attempts=1,
                       send_context="k1", lease_until=now + outbox.lease,
                       next_attempt_at=now, created_at=now))
    assert await outbox.next_due() == now + outbox.lease
    assert await outbox.recover_in_doubt(everything=False) == 0  # lease still running
    await clock.advance(outbox.lease + timedelta(seconds=1))
    assert await outbox.recover_in_doubt(everything=False) == 1
    assert channel.lookups == 1
    [row] = await query_db(db, select(Delivery))
    assert row.state == "sending"  # still in doubt: never resent blindly
    retry = clock.now() + outbox.backoff(1, None)
    assert row.lease_until == retry and await outbox.next_due() == retry
    assert await outbox.recover_in_doubt(everything=False) == 0  # not again at once
