"""Benchmark: broadcast one warning to 4,365 loudspeakers and collect every `played` ack.

    .venv/bin/python bench/bench_speakers.py [--count 4365] [--broker 127.0.0.1:1883]
                                             [--database sqlite:///...|postgresql://...]

Two runs against the same broker and the same simulated fleet (each speaker its own MQTT
client, devtools/simulators/speakers.py, acking at once):

1. raw: one aiomqtt client publishes the N commands (QoS 1, pipelined) and counts the N
   `played` acks — the floor that MQTT, the broker and the simulated devices allow;
2. warnd: the whole loudspeaker path — plan the N commands into the database, publish the
   pending rows, record the PUBACKs, apply the 3·N acks (received/playing/played) in batched
   transactions, and poll the coverage query until it shows N played.

The ratio warnd/raw is what warnd's durability (every command a row before it is published,
every ack applied to the database) costs over bare MQTT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from channels.mqtt import MqttSettings
from channels.speaker_mqtt import (
    TOPIC_ROOT,
    cmd_topic,
    make_client,
    publish_properties,
)
from warnd.clock import SystemClock
from warnd.config import County, SpeakersCfg, load_policy, load_roles, load_templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Region, Speaker
from warnd.engine.module import run_module
from warnd.engine.roster import RosterCache
from warnd.speakers.coverage import speaker_coverage
from warnd.speakers.service import SpeakerService

COUNTY = "431222"
ROOT = str(Path(__file__).resolve().parents[1])  # the simulator runs from here (warnd installed in the venv)


class PrivateBroker:
    """Mosquitto on a free port with the settings docs/mqtt.md recommends for warnd."""

    def __init__(self, folder: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                        f"max_inflight_messages 100\npersistence false\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def villages(n: int) -> list[str]:
    """n village codes spread over 22 townships (沅陵: 21-23 townships)."""
    return [f"{COUNTY}{100 + i % 22:03d}{200 + i // 22:03d}" for i in range(n)]


async def raw_loop(mqtt: MqttSettings, ids: list[str]) -> float:
    """Publish N commands with one client, wait for N `played` acks. Returns seconds."""
    run = uuid.uuid4().hex[:8]
    want = {f"raw-{run}-{i}" for i in range(len(ids))}
    got: set[str] = set()
    done = asyncio.Event()
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with make_client(mqtt, f"bench-raw-{run}", persistent=False, max_inflight=mqtt.max_inflight) as client:
        await client.subscribe(f"{TOPIC_ROOT}/+/ack", qos=1)

        async def collect() -> None:
            async for m in client.messages:
                try:
                    ack = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                except ValueError:
                    continue
                if ack.get("status") == "played" and ack.get("cmd_id") in want:
                    got.add(ack["cmd_id"])
                    if len(got) == len(want):
                        done.set()

        reader = asyncio.create_task(collect())
        await asyncio.sleep(1.0)  # let the retained acks of earlier runs drain
        t0 = time.perf_counter()
        payloads = [json.dumps({
            "v": 1, "type": "play", "cmd_id": f"raw-{run}-{i}", "warning_id": "0", "device_id": d,
            "issued_at": expires, "expires_at": expires, "drill": True, "priority": 1,
            "text": "【演练】" + "基准测试广播内容。" * 20, "repeat": 1, "volume": 50}, ensure_ascii=False)
            for i, d in enumerate(ids)]
        await asyncio.gather(*(client.publish(cmd_topic(d), p, qos=1, properties=publish_properties(3600))
                               for d, p in zip(ids, payloads, strict=True)))
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - t0
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return elapsed


async def warnd_run(mqtt: MqttSettings, ids: list[str], url: str) -> tuple[float, float, int]:
    """Returns (seconds to all played in the database, seconds to all published, played)."""
    db = Database(url)
    await db.upgrade()
    now = datetime.now(UTC)
    codes = villages(len(ids))
    async with db.session() as s, s.begin():
        s.add(Region(code=COUNTY, name="沅陵县", level="county"))
        for t in sorted({c[:9] for c in codes}):
            s.add(Region(code=t, name=f"镇{t[-3:]}", level="township", parent_code=COUNTY))
        for c in codes:
            s.add(Region(code=c, name=f"村{c[-6:]}", level="village", parent_code=c[:9]))
        for d, c in zip(ids, codes, strict=True):
            s.add(Speaker(device_id=d, region_code=c, capabilities=["tts"], online=True, last_seen_at=now,
                          updated_at=now))
        alert = Alert(sender="bench", identifier=uuid.uuid4().hex, sent=now, status="Exercise", msg_type="Alert",
                      source="bench", hazard="rainstorm", colour="red", step="imminent",
                      headline="基准测试：特大暴雨临灾预警", instruction="这是基准测试。" * 10,
                      region_codes=[COUNTY, *codes], expires=now + timedelta(hours=6), received_at=now)
        s.add(alert)
    assert alert.id is not None
    roles = load_roles()
    cfg = SpeakersCfg(enabled=True, host=mqtt.host, port=mqtt.port, client_id=f"bench-warnd-{uuid.uuid4().hex[:6]}",
                      ack_window_seconds=600, stale_after_seconds=3600, max_inflight=mqtt.max_inflight,
                      publish_timeout_seconds=mqtt.publish_timeout_seconds)
    svc = SpeakerService(db, SystemClock(), cfg, County(code=COUNTY), load_policy(None, roles), load_templates(),
                         roles, RosterCache(db))
    transport = asyncio.create_task(svc.channel.run())
    await asyncio.wait_for(svc.channel.connected.wait(), 30)
    # Retained acks and states of every device arrive on subscribe: let them drain first.
    last = -1
    while svc.channel.stats.received != last:
        last = svc.channel.stats.received
        await asyncio.sleep(1.0)
    base = svc.channel.stats.published
    t0 = time.perf_counter()
    await svc.plan_alert(alert.id)
    svc.channel.kick()
    published_at = 0.0
    worker = asyncio.create_task(run_module(svc, SystemClock()))
    while True:
        if not published_at and svc.channel.stats.published - base >= len(ids):
            published_at = time.perf_counter() - t0
        cov = await speaker_coverage(db, alert.id)
        if cov.played >= len(ids):
            break
        if time.perf_counter() - t0 > 600:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    for t in (worker, transport):
        t.cancel()
    await asyncio.gather(worker, transport, return_exceptions=True)
    await db.close()
    return elapsed, published_at, cov.played


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=4365)
    ap.add_argument("--broker", help="host:port of a broker set up as docs/mqtt.md §8 says; default: a private "
                    "Mosquitto started for the run (the stock config queues at most 1,000 messages per client, "
                    "fewer than the 3 acks x 4,365 speakers of one broadcast)")
    ap.add_argument("--database", help="default: a fresh SQLite file in a temp folder")
    args = ap.parse_args()
    broker = None
    if args.broker:
        host, _, port = args.broker.rpartition(":")
    else:
        broker = PrivateBroker(Path(tempfile.mkdtemp(prefix="warnd-bench-mqtt-")))
        broker.start()
        host, port = "127.0.0.1", str(broker.port)
    mqtt = MqttSettings(host=host, port=int(port), max_inflight=100, publish_timeout_seconds=120)
    ids = [f"BENCH-{i:05d}" for i in range(1, args.count + 1)]
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='warnd-bench-')}/bench.db"

    t = time.perf_counter()
    # The fleet runs in its own process (as real devices would be elsewhere): the two runs then
    # measure the publisher side, not an event loop shared with 4,365 simulated devices.
    fleet = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devtools.cli", "speakers", "simulate", "--count", str(len(ids)), "--prefix", "BENCH",
        "--broker", f"{host}:{port}", "--failure-rate", "0", "--offline-share", "0", "--latency", "0",
        "--play-seconds", "0", "--heartbeat", "3600", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    assert fleet.stdout is not None
    try:
        # (inside the try: a simulator that fails to start must not leave the broker running)
        while b"simulated speakers on" not in (line := await asyncio.wait_for(fleet.stdout.readline(), 600)):
            if not line:
                raise RuntimeError("the simulator exited")
        print(f"{len(ids)} simulated speakers connected in {time.perf_counter() - t:.1f} s (own process)", flush=True)
        raw = await raw_loop(mqtt, ids)
        print(f"raw aiomqtt publish/ack loop: {raw:.2f} s ({len(ids) / raw:.0f} commands/s)", flush=True)
        full, published, played = await warnd_run(mqtt, ids, url)
        print(f"warnd (database: {url.split('://')[0]}): {full:.2f} s to {played} played in the database "
              f"(all published after {published:.2f} s)", flush=True)
        print(f"ratio warnd / raw: {full / raw:.2f}")
        print(json.dumps({"count": len(ids), "raw_s": round(raw, 3), "warnd_s": round(full, 3),
                          "warnd_published_s": round(published, 3), "ratio": round(full / raw, 2)}))
    finally:
        if fleet.returncode is None:
            fleet.terminate()
        await fleet.wait()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
