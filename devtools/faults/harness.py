"""A fault scenario: a county, N `warnd serve` instances on one PostgreSQL database, the
Tencent simulator, warnings through the API, replies through the webhooks, SIGKILLs.

The scenario is seeded: which officials stay silent, when each warning is posted, when an
instance is killed and for how long it stays down. Provider faults plug in through
`Scenario.provider`, a function given the simulator and the scenario's random generator
before the first warning (it may start its own task, e.g. an outage window, through the
simulator's fault controls).

The verdict (`Report`) is computed from the provider's accepted log and the database only:
- each official exactly one warning per call (none lost, none twice),
- one message per rung per recipient (deputy and superior texts named by their call's short
  code, resends — one text for a step's silent officials — by recipient; each accepted exactly
  once for each recipient the rung's event names),
- no rung fired twice (one `call_escalated` / `call_to_duty_room` event per call and level),
- no call left open, every silent call's ladder complete up to the duty room,
- nothing lost (every message row sent, none failed, pending or in doubt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import select

from devtools.demo.capgen import cap_xml
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.clock import ScaledClock
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Event, Person, Region

TOKEN = "fault-harness-token-0123456789"
CB = "fault-harness-callback-0123456789"
COUNTY, TOWNSHIP = "431222", "431222100"
ROLES = ("village_secretary", "village_head", "grid_worker", "transfer_officer", "group_leader")
DEPUTY = {"village_secretary": "village_head", "village_head": "village_secretary",
          "grid_worker": "village_head", "transfer_officer": "village_secretary",
          "group_leader": "transfer_officer"}
KINDS = {"【临灾预警】": "warning", "【再次提醒·请确认】": "resend", "【替补叫应】": "deputy",
         "【上级督办】": "superior"}
LADDER_LEVELS = 4  # resend, deputy, superior, duty room
# Drill timetable: at 100× a 15-minute confirm window is 9 s and each rung 1.8 s.
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

Provider = Callable[[TencentSmsApi, random.Random], None]


@dataclass
class Scenario:
    name: str
    instances: int = 1
    kills: int = 2
    warnings: int = 2  # each over its own villages: one call per official
    villages: int = 8
    seed: int = 1
    speed: float = 100.0
    silent_share: float = 0.3  # officials who never answer (their calls climb the whole ladder)
    post_seconds: float = 8.0  # warnings are posted at random moments over this many real seconds
    between_kills: tuple[float, float] = (0.5, 3.0)  # real seconds from a restart to the next kill
    down_seconds: tuple[float, float] = (0.2, 2.0)  # how long a killed instance stays down
    settle_timeout: float = 120.0  # after the chaos, until the ladders are done and the outbox drained
    provider: Provider | None = None  # provider faults (through the simulator's fault controls)


@dataclass
class Report:
    scenario: str
    instances: int
    seed: int
    kills: int = 0
    officials: int = 0
    warnings: int = 0
    calls: int = 0
    accepted: int = 0  # messages in the provider's log
    lost: int = 0  # a warning or rung message that never reached the provider, or a row not sent
    duplicated: int = 0  # a message accepted more than once
    double_rungs: int = 0
    open_calls: int = 0
    incomplete_ladders: int = 0  # a silent call short of the duty room, or a gap in its rungs
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.double_rungs or self.open_calls or self.incomplete_ladders)

    def row(self) -> str:
        return (f"| {self.scenario} | {self.instances} | {self.seed} | {self.kills} | {self.officials} | "
                f"{self.warnings} | {self.calls} | {self.accepted} | {self.lost} | {self.duplicated} | "
                f"{self.double_rungs} | {self.open_calls} | {self.incomplete_ladders} | {self.seconds:.0f} |")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


TABLE_HEAD = ("| scenario | instances | seed | kills | officials | warnings | calls | accepted SMS | lost | "
              "duplicated | double rungs | open calls | incomplete ladders | seconds |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def phone(village: int, role: str) -> str:
    return f"+86139{village:04d}{ROLES.index(role) + 1:04d}"


def village_code(v: int) -> str:
    return f"{TOWNSHIP}{200 + v:03d}"


def headline(k: int) -> str:
    return f"暴雨预警第{k}号"


def kind_of(body: str) -> str:
    return next((k for prefix, k in KINDS.items() if body.startswith(prefix)), "other")


def code_of(body: str) -> str | None:
    m = re.search(r"编号(\w+)", body)
    return m.group(1) if m else None


def warning_of(body: str) -> int | None:
    m = re.search(r"暴雨预警第(\d+)号", body)
    return int(m.group(1)) if m else None


async def seed_roster(url: str, villages: int) -> None:
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
            for v in range(villages):
                village, group = village_code(v), f"{village_code(v)}001"
                s.add(Region(code=village, name=f"{v}号村", level="village", parent_code=TOWNSHIP))
                s.add(Region(code=group, name=f"{v}号村一组", level="group", parent_code=village))
                for role in ROLES:
                    s.add(Person(key=phone(v, role), name=f"{v}号村{role}", phone=phone(v, role), role=role,
                                 region_code=group if role == "group_leader" else village,
                                 deputy_key=phone(v, DEPUTY[role]), updated_at=now))
    finally:
        await db.close()


def free_port() -> int:
    """A free port below the kernel's ephemeral range: an instance binds it again after each
    restart, and an ephemeral port could meanwhile be taken by an outgoing connection."""
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
    raise RuntimeError("no free port")


@dataclass
class Instance:
    """One `warnd serve` child process, restartable under the same name and port."""

    name: str
    config: Path
    port: int
    clock_spec: str
    log: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "warnd.cli", "--config", str(self.config), "serve", "--port", str(self.port),
                "--clock", self.clock_spec, "--instance", self.name, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        self.starts += 1
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(90):
                while b"warnd serving on" not in (line := await self.proc.stdout.readline()):
                    if not line:
                        raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}") from None

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


def write_config(folder: Path, db_url: str, sim: TencentSmsApi, port: int) -> Path:
    (folder / "policy.toml").write_text(POLICY, encoding="utf-8")
    config = folder / "warnd.toml"
    config.write_text(f"""
[county]
code = "{COUNTY}"
[database]
url = "{db_url}"
[server]
host = "127.0.0.1"
port = {port}
public_base_url = "http://127.0.0.1:{port}"
[api]
tokens = ["{TOKEN}"]
[policy]
path = "{folder / "policy.toml"}"
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
timeout_seconds = 3
""", encoding="utf-8")
    return config


class Run:
    """One scenario being played."""

    def __init__(self, sc: Scenario, db_url: str, folder: Path):
        self.sc, self.db_url, self.folder = sc, db_url, folder
        self.rng = random.Random(sc.seed)
        self.accepted_log = folder / "accepted.jsonl"
        self.sim = TencentSmsApi(log_path=self.accepted_log)
        self.clock = ScaledClock(sc.speed)
        self.instances: list[Instance] = []
        self.officials = {phone(v, r): (v, r) for v in range(sc.villages) for r in ROLES}
        self.silent = {p for p in self.officials if self.rng.random() < sc.silent_share}
        self.replied: set[str] = set()
        self.kills = 0
        self.http: aiohttp.ClientSession | None = None
        self._outstanding: set[asyncio.Task[None]] = set()

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.up]

    async def _request(self, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        """POST to a live instance; an instance killed meanwhile is answered by another."""
        assert self.http is not None
        async with asyncio.timeout(self.sc.settle_timeout):
            while True:
                live = self.live()
                if live:
                    target = self.rng.choice(live)
                    try:
                        async with self.http.post(target.base + path, data=data, headers=headers) as r:
                            return r.status, await r.text()
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                await asyncio.sleep(0.1)  # every instance is down this moment: try again

    async def post_warning(self, k: int, villages: list[int]) -> None:
        now = self.clock.now()
        cap = cap_xml(f"FAULT-{k}", now, now + timedelta(hours=1), "黄色", headline(k), "请立即组织危险区群众转移。",
                      [village_code(v) for v in villages], step="imminent")
        status, body = await self._request("/api/v1/alerts", cap, {"Authorization": f"Bearer {TOKEN}"})
        if status not in (200, 201):
            raise RuntimeError(f"warning {k} refused: {status} {body}")

    async def reply(self, number: str) -> None:
        nationcode, subscriber = number[1:3], number[3:]
        payload = json.dumps({"extend": "", "mobile": subscriber, "nationcode": nationcode,
                              "sign": self.sim.sign_name, "text": "收到", "time": int(time.time())},
                             ensure_ascii=False).encode()
        status, body = await self._request(f"/webhooks/tencent/sms/{CB}/reply", payload,
                                           {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"reply from {number} refused: {status} {body}")

    async def replier(self) -> None:
        """Officials who answer do so as soon as their warning is on their phone."""
        seen = 0
        while True:
            await self.sim.wait_until(lambda n=seen: len(self.sim.messages) > n, timeout=24 * 3600)
            fresh = self.sim.messages[seen:]
            seen += len(fresh)
            for m in fresh:
                if (m.to in self.officials and m.to not in self.silent and m.to not in self.replied
                        and kind_of(m.body) == "warning"):
                    self.replied.add(m.to)
                    task = asyncio.create_task(self.reply(m.to))
                    self._outstanding.add(task)
                    task.add_done_callback(self._outstanding.discard)

    async def chaos(self) -> None:
        """Kill a random live instance, keep it down a while, restart it; again after a random
        stretch of uptime (a restart takes seconds: kills at absolute moments would pile up)."""
        for _ in range(self.sc.kills):
            await asyncio.sleep(self.rng.uniform(*self.sc.between_kills))
            victim = self.rng.choice(self.live())
            await victim.kill()
            self.kills += 1
            await asyncio.sleep(self.rng.uniform(*self.sc.down_seconds))
            await victim.start()

    async def drive(self) -> None:
        groups = [list(range(self.sc.villages))[k::self.sc.warnings] for k in range(self.sc.warnings)]
        moments = sorted(self.rng.uniform(0.0, self.sc.post_seconds) for _ in groups)
        started = time.monotonic()
        for k, (at, villages) in enumerate(zip(moments, groups, strict=True), start=1):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            await self.post_warning(k, villages)

    async def quiet(self) -> bool:
        """Every call confirmed or with the duty room, and nothing left to send."""
        db = Database(self.db_url)
        try:
            async with db.read() as s:
                states = set((await s.exec(select(Call.state))).all())
                busy = (await s.exec(select(Delivery.id).where(
                    Delivery.state.in_(["pending", "sending"])).limit(1))).first()  # type: ignore[attr-defined]
        finally:
            await db.close()
        return bool(states) and states <= {"confirmed", "duty_room"} and busy is None

    async def play(self) -> Report:
        started = time.monotonic()
        await seed_roster(self.db_url, self.sc.villages)
        await self.sim.start()
        try:
            port = free_port()
            config = write_config(self.folder, self.db_url, self.sim, port)
            self.instances = [Instance(f"i{n}", config, port if n == 0 else free_port(), self.clock.spec(),
                                       self.folder / f"serve-i{n}.log") for n in range(self.sc.instances)]
            await asyncio.gather(*(i.start() for i in self.instances))
            if self.sc.provider is not None:
                self.sc.provider(self.sim, self.rng)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as self.http:
                replier = asyncio.create_task(self.replier())
                try:
                    await asyncio.gather(self.drive(), self.chaos())
                    for i in self.instances:
                        if not i.up:
                            await i.start()
                    deadline = time.monotonic() + self.sc.settle_timeout
                    while not await self.quiet():
                        if time.monotonic() > deadline:
                            break  # the report says what is left
                        await asyncio.sleep(0.25)  # a poll of the database; the bound is settle_timeout
                    if self._outstanding:
                        await asyncio.gather(*self._outstanding)
                finally:
                    replier.cancel()
                    await asyncio.gather(replier, return_exceptions=True)
        finally:
            for i in self.instances:
                await i.kill(signal.SIGTERM)
            await self.sim.stop()
        report = await self.verdict()
        report.seconds = time.monotonic() - started
        return report

    async def verdict(self) -> Report:
        sc = self.sc
        report = Report(sc.name, sc.instances, sc.seed, kills=self.kills, officials=len(self.officials),
                        warnings=sc.warnings)
        accepted = [json.loads(line) for line in self.accepted_log.read_text(encoding="utf-8").splitlines()] \
            if self.accepted_log.exists() else []
        report.accepted = len(accepted)
        db = Database(self.db_url)
        try:
            async with db.read() as s:
                phones = dict((await s.exec(select(Person.id, Person.phone))).all())
                calls = (await s.exec(select(Call))).all()
                rungs = (await s.exec(select(Event.call_id, Event.kind, Event.data).where(
                    Event.kind.in_(["call_escalated", "call_to_duty_room"])))).all()  # type: ignore[attr-defined]
                headlines = dict((await s.exec(select(Alert.id, Alert.headline))).all())
                rows = (await s.exec(select(Delivery.state, Delivery.purpose))).all()
        finally:
            await db.close()
        report.calls = len(calls)

        # 1. Each official exactly one warning per call (warnings cover disjoint villages).
        got_w = Counter((m["to"], warning_of(m["text"])) for m in accepted if kind_of(m["text"]) == "warning")
        want = Counter((phones[c.person_id], warning_of(headlines[c.alert_id])) for c in calls)
        report.lost += sum((want - got_w).values())
        report.duplicated += sum((got_w - want).values())

        # 2. No rung fired twice; every silent call's ladder complete.
        fired = Counter((cid, data["level"]) for cid, _, data in rungs)
        report.double_rungs = sum(n - 1 for n in fired.values() if n > 1)
        report.open_calls = sum(1 for c in calls if c.state == "open")
        for c in calls:
            levels = sorted({lvl for cid, lvl in fired if cid == c.id})
            expect = list(range(1, (LADDER_LEVELS if c.state == "duty_room" else c.level) + 1))
            # A silent official's call ends with the duty room, or confirmed by the deputy or
            # superior its rungs reached (their 收到 covers calls they were sent about).
            confirmed_for_them = c.state == "confirmed" and c.level >= 2 and c.confirmed_by_id != c.person_id
            if levels != expect or (phones[c.person_id] in self.silent
                                    and c.state != "duty_room" and not confirmed_for_them):
                report.incomplete_ladders += 1
                report.notes.append(f"call {c.id}: {c.state} at level {c.level}, rungs {levels}, "
                                    f"confirmed by {c.confirmed_by_id} via {c.confirmed_via}")

        # 3. One message per rung per recipient.
        codes = {c.id: c.short_code for c in calls}
        want_e: Counter[tuple[str, str, str | None]] = Counter()
        for cid, kind, data in rungs:
            if kind == "call_escalated":
                # The resend is one text for all of a step's silent officials (provider batches):
                # it names no code; deputy and superior texts name the silent official's call.
                code = None if data["action"] == "resend" else codes[cid]
                want_e.update((phones[pid], data["action"], code) for pid in data["recipients"])
        got_e = Counter((m["to"], kind_of(m["text"]), code_of(m["text"])) for m in accepted
                        if kind_of(m["text"]) in ("resend", "deputy", "superior"))
        # An escalation message still pending when its call was confirmed is cancelled, not lost.
        cancelled = sum(1 for st, purpose in rows if st == "cancelled" and purpose == "escalation")
        missing = sum((want_e - got_e).values())
        report.lost += max(0, missing - cancelled)
        report.duplicated += sum((got_e - want_e).values())

        # 4. Nothing lost: every message row went out (or was cancelled as moot).
        stuck = Counter(st for st, _ in rows if st not in ("sent", "delivered", "cancelled"))
        report.lost += sum(stuck.values())
        if stuck:
            report.notes.append(f"message rows not sent: {dict(stuck)}")
        other = Counter(kind_of(m["text"]) for m in accepted) - Counter(
            {"warning": sum(got_w.values()), **{k: n for k, n in Counter(k for _, k, _ in got_e.elements()).items()}})
        if other:
            report.notes.append(f"other messages accepted: {dict(other)}")
        return report


async def run(sc: Scenario, db_url: str, folder: Path) -> Report:
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    return await Run(sc, db_url, folder).play()
