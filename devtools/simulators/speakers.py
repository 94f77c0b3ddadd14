"""Simulated village loudspeakers: every device is its own MQTT client following docs/mqtt.md.

No shortcut in the contract: each simulated speaker has its own connection (client id = device
id), persistent session, last will on its retained state topic, QoS 1 subscription to its own
command topic, heartbeats, and the cmd_id de-duplication and expiry check the contract asks of a
real device. Thousands of them run in one asyncio process (4,365 connect in a few seconds on a
laptop against a local Mosquitto).

Realistic failures, all configurable: `failure_rate` (the device reports `failed`, reason
amplifier_fault), `silent_rate` (it receives, then never reports `played`: a wedged player),
`offline_share` (the device was online before the storm and then lost power: its connection
drops with its last will, and it stays away), latency before each ack and the play duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from channels.mqtt import MqttSettings
from channels.speaker_mqtt import cmd_topic, device_topic, make_client
from warnd.clock import Clock, SystemClock

log = structlog.get_logger("warnd.sim.speakers")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class SimConfig:
    failure_rate: float = 0.0  # reports failed (amplifier_fault)
    silent_rate: float = 0.0  # receives, never reports played
    offline_share: float = 0.0  # drops with its last will before the storm and stays away
    latency: tuple[float, float] = (0.01, 0.1)  # real seconds before each ack
    play_seconds: float = 0.05  # real seconds a play takes (all repeats)
    heartbeat_seconds: float = 60.0
    reconnect_seconds: tuple[float, float] = (0.2, 5.0)
    connect_concurrency: int = 64


@dataclass
class FleetStats:
    plays: Counter[tuple[str, str]] = field(default_factory=Counter)  # (device, cmd_id) → plays
    received: int = 0
    duplicates: int = 0
    expired: int = 0
    failed: int = 0
    silent: int = 0
    connects: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # connection errors by message

    @property
    def played(self) -> int:
        return sum(self.plays.values())

    def played_twice(self) -> list[tuple[str, str]]:
        return [k for k, n in self.plays.items() if n > 1]


class SimSpeaker:
    def __init__(self, device_id: str, fleet: SpeakerFleet, *, fails: bool, silent: bool):
        self.device_id, self.fleet, self.fails, self.silent = device_id, fleet, fails, silent
        self.acks: dict[str, dict[str, Any]] = {}  # cmd_id → latest ack ("flash" memory)
        self.unsent: set[str] = set()  # cmd_ids whose latest ack the broker has not acknowledged
        self.client: aiomqtt.Client | None = None  # the current connection
        self.connected = asyncio.Event()
        self.down = asyncio.Event()  # set while not connected
        self.down.set()
        self.up = asyncio.Event()
        self.up.set()
        self._kill = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"speaker-{self.device_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for t in list(self._work):
            t.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)

    async def kill(self) -> None:
        """Lose power: the connection drops without a clean goodbye, the broker publishes the
        last will (offline, retained). Stays down until `revive()`."""
        self.up.clear()
        self._kill.set()
        await self.down.wait()

    def revive(self) -> None:
        self._kill.clear()
        self.up.set()

    async def _run(self) -> None:
        low, high = self.fleet.cfg.reconnect_seconds
        delay = low
        while True:
            await self.up.wait()
            try:
                async with self.fleet.connect_gate:
                    client = make_client(self.fleet.mqtt, self.device_id, persistent=True, will=aiomqtt.Will(
                        device_topic(self.device_id, "state", self.fleet.root), json.dumps({"v": 1, "online": False, "reason": "lwt"}),
                        qos=1, retain=True))
                    await client.__aenter__()
                try:
                    await self._session(client)
                finally:
                    self.client = None
                    self.connected.clear()
                    self.down.set()
                    # Bounded: a connection that died under us may never confirm the DISCONNECT.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.__aexit__(None, None, None), 2)
                delay = low
            except aiomqtt.MqttError as e:
                self.fleet.stats.errors[str(e)[:60]] += 1
                self.connected.clear()
                self.down.set()
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, high)

    async def _session(self, client: aiomqtt.Client) -> None:
        self.fleet.stats.connects += 1
        await client.publish(device_topic(self.device_id, "state", self.fleet.root), json.dumps({
            "v": 1, "online": True, "at": _iso(self.fleet.clock.now()), "fw": "sim-1.0",
            "caps": ["tts"], "hb_interval_s": int(self.fleet.cfg.heartbeat_seconds)}), qos=1, retain=True)
        await client.subscribe(cmd_topic(self.device_id, self.fleet.root), qos=1)
        self.client = client
        for cmd_id in sorted(self.unsent):
            await self._publish_ack(client, cmd_id)
        self.connected.set()
        self.down.clear()
        tasks = [asyncio.create_task(self._read(client)), asyncio.create_task(self._heartbeats(client)),
                 asyncio.create_task(self._kill.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._kill.is_set():
            # MQTT 5 "Disconnect with Will Message": the broker publishes the last will, as it
            # would when a power cut drops the TCP connection (without waiting for keep-alive).
            client._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(client._disconnected), 5)
            return
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        every = self.fleet.cfg.heartbeat_seconds
        await asyncio.sleep(random.uniform(0, every))
        while True:
            await client.publish(device_topic(self.device_id, "hb", self.fleet.root), json.dumps({
                "v": 1, "at": _iso(self.fleet.clock.now()), "power": "mains", "volume": 80, "playing": None}), qos=0)
            await asyncio.sleep(every)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            t = asyncio.create_task(self._handle(client, bytes(payload)))
            self._work.add(t)
            t.add_done_callback(self._work.discard)

    # --- the device behaviour the contract asks for ----------------------------------------------

    async def _ack(self, client: aiomqtt.Client, cmd_id: str, status: str, **extra: Any) -> None:
        ack = {"v": 1, "cmd_id": cmd_id, "device_id": self.device_id, "status": status,
               "at": _iso(self.fleet.clock.now()), **extra}
        self.acks[cmd_id] = ack
        self.unsent.add(cmd_id)
        await self._publish_ack(client, cmd_id)

    async def _publish_ack(self, client: aiomqtt.Client | None, cmd_id: str) -> None:
        """An ack stays owed until the broker acknowledged it; a connection lost meanwhile
        (power, 4G, broker restart) means it is published again after the reconnect. Always on
        the current connection: a play that outlived its connection reports on the new one."""
        ack = self.acks[cmd_id]
        for _ in range(3):
            current = self.client
            if current is None:
                return  # still owed; _session() re-publishes it on connect
            try:
                await current.publish(device_topic(self.device_id, "ack", self.fleet.root), json.dumps(ack), qos=1, retain=True)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)
                continue
            if self.acks.get(cmd_id) is ack:
                self.unsent.discard(cmd_id)
            return

    async def _handle(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            cmd = json.loads(payload)
            cmd_id = str(cmd["cmd_id"])
            assert cmd.get("v") == 1 and cmd.get("type") == "play" and cmd.get("device_id") == self.device_id
        except Exception:
            return
        stats, cfg = self.fleet.stats, self.fleet.cfg
        if cmd_id in self.acks:  # a repeat: never play twice, say where we are
            stats.duplicates += 1
            if self.acks[cmd_id].get("at"):
                await self._publish_ack(client, cmd_id)
            return
        expires = _parse_time(cmd.get("expires_at"))
        if expires is None or self.fleet.clock.now() >= expires:
            stats.expired += 1
            await self._ack(client, cmd_id, "failed", reason="expired", plays=0)
            return
        self.acks[cmd_id] = {"v": 1, "cmd_id": cmd_id, "device_id": self.device_id, "status": "received"}
        stats.received += 1
        await asyncio.sleep(random.uniform(*cfg.latency))
        await self._ack(client, cmd_id, "received")
        if self.fails:
            stats.failed += 1
            await self._ack(client, cmd_id, "failed", reason="amplifier_fault", plays=0)
            return
        if self.silent:
            stats.silent += 1
            return
        await self._ack(client, cmd_id, "playing")
        stats.plays[(self.device_id, cmd_id)] += 1
        await asyncio.sleep(cfg.play_seconds)
        await self._ack(client, cmd_id, "played", plays=int(cmd.get("repeat", 1)))


class SpeakerFleet:
    def __init__(self, device_ids: Sequence[str], mqtt: MqttSettings, cfg: SimConfig | None = None,
                 clock: Clock | None = None, seed: int = 631):
        # A device does not wait long on a dead connection: its owed acks go out on the next one.
        self.mqtt = mqtt.model_copy(update={"publish_timeout_seconds": min(mqtt.publish_timeout_seconds, 5.0)})
        self.root = mqtt.speaker_root  # [speakers] topic_root/warnd/v1/dev
        self.cfg = cfg or SimConfig()
        self.clock: Clock = clock or SystemClock()
        self.stats = FleetStats()
        self.connect_gate = asyncio.Semaphore(self.cfg.connect_concurrency)
        rng = random.Random(seed)
        ids = list(device_ids)
        n_off = round(len(ids) * self.cfg.offline_share)
        self.offline = set(rng.sample(ids, n_off)) if n_off else set()
        self.devices: dict[str, SimSpeaker] = {}
        for d in ids:
            self.devices[d] = SimSpeaker(d, self, fails=rng.random() < self.cfg.failure_rate,
                                         silent=rng.random() < self.cfg.silent_rate)

    async def start(self, within: float = 120.0) -> None:
        """Connect every device (they announce themselves online), then drop the offline share
        with their last will."""
        for dev in self.devices.values():
            dev.start()
        await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in self.devices.values())), within)
        await asyncio.gather(*(self.devices[d].kill() for d in self.offline))
        log.info("speaker fleet up", devices=len(self.devices), offline=len(self.offline))

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.devices.values()))

    def summary(self) -> dict[str, int]:
        s = self.stats
        return {"devices": len(self.devices), "offline": len(self.offline), "connected":
                sum(d.connected.is_set() for d in self.devices.values()), "received": s.received,
                "played": s.played, "failed": s.failed, "silent": s.silent, "expired": s.expired,
                "duplicates": s.duplicates, "played_twice": len(s.played_twice())}


async def start_fleet(device_ids: Sequence[str], *, host: str = "127.0.0.1", port: int = 1883,
                      failure_rate: float = 0.03, silent_rate: float = 0.0, offline_share: float = 0.02,
                      latency: tuple[float, float] = (0.05, 0.5), play_seconds: float = 0.2,
                      heartbeat_seconds: float = 60.0, clock: Clock | None = None, seed: int = 631,
                      mqtt: MqttSettings | None = None) -> SpeakerFleet:
    """Start simulated speakers for these device ids (e.g. every `Speaker.device_id` in the
    registry) and return once they are connected. `await fleet.stop()` when done."""
    fleet = SpeakerFleet(device_ids, mqtt or MqttSettings(host=host, port=port), SimConfig(
        failure_rate=failure_rate, silent_rate=silent_rate, offline_share=offline_share, latency=latency,
        play_seconds=play_seconds, heartbeat_seconds=heartbeat_seconds), clock=clock, seed=seed)
    await fleet.start()
    return fleet


# --- command line (`warnd-dev speakers simulate`) -------------------------------------------------


def add_cli(sub: Any, settings_of: Any) -> None:
    """Register `warnd-dev speakers simulate` on the dev command's subparsers."""
    import argparse

    sp = sub.add_parser("speakers", help="village loudspeakers over MQTT (docs/mqtt.md)")
    sps = sp.add_subparsers(dest="speakers_command", required=True)
    sim = sps.add_parser("simulate", help="run N simulated speakers as real MQTT clients")
    sim.add_argument("--count", type=int, default=None,
                     help="how many speakers (default 100; with --from-database all registered)")
    sim.add_argument("--broker", help="host:port (default: [speakers] host and port)")
    sim.add_argument("--topic-root", default=None,
                     help="topic levels in front of warnd/v1/dev (default: [speakers] topic_root; '' for none)")
    sim.add_argument("--failure-rate", type=float, default=0.03, help="share that report failed")
    sim.add_argument("--silent-rate", type=float, default=0.0, help="share that never report played")
    sim.add_argument("--offline-share", type=float, default=0.02, help="share that drop with their last will")
    sim.add_argument("--latency", type=float, default=0.5, help="at most this many seconds before each ack")
    sim.add_argument("--play-seconds", type=float, default=2.0)
    sim.add_argument("--heartbeat", type=float, default=60.0, help="heartbeat interval, seconds")
    sim.add_argument("--prefix", default="SIM", help="device ids PREFIX-00001... (unless --from-database)")
    sim.add_argument("--from-database", action="store_true", help="simulate the registry's devices")
    sim.add_argument("--database", help="database URL (overrides the settings file)")
    sim.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    sim.add_argument("--seed", type=int, default=631)

    def run_sim(args: argparse.Namespace) -> int:
        return asyncio.run(_simulate(args, settings_of(args)))

    sim.set_defaults(func=run_sim)


async def _device_ids(settings: Any, args: Any) -> list[str]:
    if not args.from_database:
        return [f"{args.prefix}-{i:05d}" for i in range(1, (args.count or 100) + 1)]
    from sqlmodel import select

    from warnd.db.engine import Database
    from warnd.db.models import Speaker

    db = Database(settings.database.url)
    try:
        async with db.session() as s:
            ids = list((await s.exec(select(Speaker.device_id).where(Speaker.active == True))).all())  # noqa: E712
    finally:
        await db.close()
    return sorted(ids)[: args.count] if args.count else sorted(ids)


async def _simulate(args: Any, settings: Any) -> int:
    import signal

    cfg = settings.speakers
    host, port = cfg.host, cfg.port
    if args.broker:
        host, _, p = args.broker.rpartition(":")
        host, port = host or cfg.host, int(p)
    mqtt = cfg.mqtt(settings.county.code).model_copy(update={"host": host, "port": port})
    if args.topic_root is not None:  # validated as [speakers] topic_root is
        mqtt = MqttSettings(**{**mqtt.model_dump(), "topic_root": args.topic_root})
    ids = await _device_ids(settings, args)
    fleet = SpeakerFleet(ids, mqtt, SimConfig(
        failure_rate=args.failure_rate, silent_rate=args.silent_rate, offline_share=args.offline_share,
        latency=(0.0, max(args.latency, 0.0)), play_seconds=args.play_seconds,
        heartbeat_seconds=args.heartbeat), seed=args.seed)
    started = time.monotonic()
    await fleet.start()
    print(f"{len(ids)} simulated speakers on {host}:{port} under {mqtt.speaker_root}/ "
          f"({len(fleet.offline)} dropped with last will) "
          f"in {time.monotonic() - started:.1f} s", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + args.duration if args.duration else None
    while not stop.is_set():
        wait = 10.0 if deadline is None else min(10.0, max(deadline - time.monotonic(), 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        print(json.dumps(fleet.summary()), flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            break
    await fleet.stop()
    return 0
