"""Village loudspeakers over MQTT (aiomqtt): the transport half of docs/mqtt.md.

One long-lived connection: MQTT 5, persistent session (Clean Start 0 + Session Expiry), QoS 1
both ways, reconnect with exponential backoff and jitter. The channel holds no state of its
own that matters: commands come from a `SpeakerHandler` (warnd.speakers.service keeps them as
database rows) and are handed back as published only after the broker's PUBACK, so a command
the broker never accepted is simply offered again after the reconnect. Inbound acks, states
and heartbeats are parsed, checked against the topic and handed to the handler in batches (one
database transaction per batch, not per message: 4,000 acks arrive within seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import aiomqtt
import jsonschema
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from channels.mqtt import SPEAKER_TOPICS, MqttSettings, shared_topic

log = structlog.get_logger("warnd.speakers.mqtt")

# The default root of every loudspeaker topic; `[speakers] topic_root` puts levels in front of
# it (MqttSettings.speaker_root), and every function below takes that root.
TOPIC_ROOT = SPEAKER_TOPICS
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PAYLOAD = 16 * 1024

Kind = Literal["ack", "state", "hb"]

# Subscription identifiers (MQTT 5): LIVE is the shared subscription (each message reaches
# one instance); REPLAY a plain one to acks and states, only for the broker's retained copies
# sent on subscribe (a shared subscription gets none). Its live copies are the other's job.
LIVE, REPLAY = 1, 2


def cmd_topic(device_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{device_id}/cmd"


def device_topic(device_id: str, kind: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{device_id}/{kind}"


@cache
def _device_topic_re(root: str) -> re.Pattern[str]:
    return re.compile(re.escape(root) + r"/([A-Za-z0-9_-]{1,64})/(ack|state|hb)")


@dataclass(frozen=True)
class OutgoingCommand:
    key: int  # the handler's identity for it (database row id)
    device_id: str
    payload: bytes
    expiry_seconds: int  # MQTT 5 Message Expiry Interval (real seconds, >= 1)


@dataclass(frozen=True)
class DeviceMessage:
    device_id: str
    kind: Kind
    data: dict[str, Any]
    retained: bool = False


class SpeakerHandler(Protocol):
    async def pending(self, limit: int) -> Sequence[OutgoingCommand]:
        """Commands to publish now (never expired ones)."""
        ...

    async def published(self, keys: Sequence[int]) -> None:
        """The broker accepted these (PUBACK)."""
        ...

    async def on_messages(self, msgs: Sequence[DeviceMessage]) -> None: ...


SCHEMAS = Path(__file__).with_name("schemas")  # the published JSON Schemas of docs/mqtt.md
SCHEMA_OF = {"ack": "ack.json", "state": "state.json", "hb": "heartbeat.json", "cmd": "command.json",
             "stop": "stop.json"}


@cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / SCHEMA_OF[kind]).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def contract_errors(kind: str, data: Any) -> list[str]:
    """What in `data` breaks the published schema of `kind` (ack, state, hb, cmd, stop); [] when valid."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(message)'}: {e.message}"
            for e in validator(kind).iter_errors(data)]


def parse_message(topic: str, payload: bytes, retained: bool = False, root: str = TOPIC_ROOT) -> DeviceMessage | None:
    """A device message, or None for anything that does not follow the contract: its topic
    (under `root`), JSON, and the published JSON Schema of its kind (an ack without `at` is
    refused)."""
    m = _device_topic_re(root).fullmatch(topic)
    if m is None or len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("v") != 1:
        return None
    device_id, kind = m.group(1), m.group(2)
    claimed = data.get("device_id")
    if claimed is not None and claimed != device_id:
        return None  # a device cannot speak for another
    errors = contract_errors(kind, data)
    if errors:
        log.warning("device message refused: not as the contract's schema says", device=device_id, kind=kind,
                    errors=errors[:3])
        return None
    return DeviceMessage(device_id, kind, data, retained)  # type: ignore[arg-type]


def publish_properties(expiry_seconds: int) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = max(1, int(expiry_seconds))
    p.PayloadFormatIndicator = 1
    p.ContentType = "application/json"
    return p


def connect_properties(session_expiry: int) -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = session_expiry
    return p


def tls_context(cfg: MqttSettings) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if cfg.tls_insecure:
        ctx.check_hostname = False
    return ctx


def make_client(cfg: MqttSettings, identifier: str, *, persistent: bool = True,
                will: aiomqtt.Will | None = None, max_inflight: int | None = None) -> aiomqtt.Client:
    """An aiomqtt client configured from the settings (also used by the simulator)."""
    client = aiomqtt.Client(
        cfg.host, cfg.port, identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5,
        username=cfg.username or None, password=cfg.password or None,
        clean_start=not persistent,  # paho takes a bool or MQTT_CLEAN_START_FIRST_ONLY
        properties=connect_properties(cfg.session_expiry_seconds if persistent else 0),
        keepalive=cfg.keepalive, will=will, tls_context=tls_context(cfg),
        tls_insecure=cfg.tls_insecure if cfg.tls else None,
        max_inflight_messages=max_inflight, timeout=cfg.publish_timeout_seconds,
        # Small packets, request/response: without TCP_NODELAY, Nagle meets delayed ACK and each
        # round trip costs ~40 ms.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    client.pending_calls_threshold = 1_000_000  # thousands of pipelined publishes are the point
    return client


@dataclass
class ChannelStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    received: int = 0
    ignored: int = 0
    replayed_live: int = 0  # live messages seen on the replay subscription and left to the shared group
    last_error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class SpeakerMqtt:
    """The MQTT channel. `run()` until cancelled; `kick()` after new commands were stored."""

    kind = "speaker"
    provider = "mqtt"

    def __init__(self, cfg: MqttSettings, handler: SpeakerHandler, *, batch: int = 1000,
                 poll_seconds: float = 5.0):
        self.cfg, self.handler, self.batch, self.poll_seconds = cfg, handler, batch, poll_seconds
        self.wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.stats = ChannelStats()
        self._inbox: list[DeviceMessage] = []
        self._inbox_ready = asyncio.Event()

    def kick(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        deliver = asyncio.create_task(self._deliver(), name="speaker-inbox")
        try:
            await self._connect_loop()
        finally:
            deliver.cancel()
            await asyncio.gather(deliver, return_exceptions=True)

    async def _connect_loop(self) -> None:
        delay = self.cfg.reconnect_min_seconds
        while True:
            client = make_client(self.cfg, self.cfg.client_id, max_inflight=self.cfg.max_inflight)
            try:
                await client.__aenter__()
                try:
                    self.stats.connects += 1
                    delay = self.cfg.reconnect_min_seconds
                    await subscribe(client, self.cfg.share_group or self.cfg.client_id, self.cfg.speaker_root)
                    self.connected.set()
                    log.info("mqtt connected", host=self.cfg.host, port=self.cfg.port, client_id=self.cfg.client_id,
                             topics=self.cfg.speaker_root)
                    await _first_failure(self._read(client), self._publish_loop(client))
                finally:
                    # Bounded: a dead connection may never confirm our DISCONNECT.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await client.__aexit__(None, None, None)
            except aiomqtt.MqttError as e:
                self.stats.last_error = str(e)
                log.warning("mqtt connection lost; reconnecting", error=str(e), retry_in=round(delay, 2))
            finally:
                if self.connected.is_set():
                    self.stats.disconnects += 1
                self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.cfg.reconnect_max_seconds)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.retain and LIVE not in subscription_ids(message):
                self.stats.replayed_live += 1  # a live copy on the replay subscription: the group has it
                continue
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else str(message.payload).encode()
            msg = parse_message(str(message.topic), bytes(payload), bool(message.retain), self.cfg.speaker_root)
            if msg is None:
                self.stats.ignored += 1
                log.warning("ignored mqtt message", topic=str(message.topic))
                continue
            self.stats.received += 1
            self._inbox.append(msg)
            self._inbox_ready.set()

    async def _deliver(self) -> None:
        """Hand inbound messages over in batches; a slow database makes batches bigger, not a
        backlog of transactions."""
        while True:
            await self._inbox_ready.wait()
            self._inbox_ready.clear()
            batch, self._inbox = self._inbox, []
            if batch:
                try:
                    await self.handler.on_messages(batch)
                except Exception:
                    log.exception("handling device messages failed; retrying")
                    self._inbox = batch + self._inbox
                    self._inbox_ready.set()
                    await asyncio.sleep(1.0)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            self.wake.clear()
            cmds = await self.handler.pending(self.batch)
            if not cmds:
                try:  # asyncio.timeout: wait_for can lose a cancellation on Python 3.11
                    async with asyncio.timeout(self.poll_seconds):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                continue
            await self.publish_batch(client, cmds)

    async def publish_batch(self, client: aiomqtt.Client, cmds: Sequence[OutgoingCommand]) -> None:
        """Publish concurrently (QoS 1 pipelined on the connection); record every PUBACK
        received, then re-raise a connection failure so the caller reconnects."""

        gate = asyncio.Semaphore(max(1, self.cfg.max_inflight))
        root = self.cfg.speaker_root

        async def one(c: OutgoingCommand) -> None:
            # Gated to the in-flight window, so the publish timeout measures the broker's answer,
            # not the time spent queued behind a thousand others.
            async with gate:
                await client.publish(cmd_topic(c.device_id, root), c.payload, qos=1,
                                     properties=publish_properties(c.expiry_seconds))

        results = await asyncio.gather(*(one(c) for c in cmds), return_exceptions=True)
        done = [c.key for c, r in zip(cmds, results, strict=True) if r is None]
        if done:
            # Shielded: a disconnect cancelling us must not roll back what the broker accepted.
            await asyncio.shield(self.handler.published(done))
            self.stats.published += len(done)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def close(self) -> None:
        pass


def subscription_properties(identifier: int) -> Properties:
    p = Properties(PacketTypes.SUBSCRIBE)
    p.SubscriptionIdentifier = identifier
    return p


async def subscribe(client: aiomqtt.Client, group: str, root: str = TOPIC_ROOT) -> None:
    """Acks, states and heartbeats (under `root`) through the instances' shared group; retained
    acks and states through a plain subscription as well (re-read at every connect: acks
    published while no instance was up, each device's last state)."""
    for kind, qos in (("ack", 1), ("state", 1), ("hb", 0)):
        await client.subscribe(shared_topic(group, f"{root}/+/{kind}"), qos=qos,
                               properties=subscription_properties(LIVE))
    for kind in ("ack", "state"):
        await client.subscribe(f"{root}/+/{kind}", qos=1, properties=subscription_properties(REPLAY))
    # A session from before shared subscriptions may still hold this one: every instance
    # would get every heartbeat.
    await client.unsubscribe(f"{root}/+/hb")


def subscription_ids(message: aiomqtt.Message) -> list[int]:
    ids = getattr(message.properties, "SubscriptionIdentifier", None) if message.properties else None
    if ids is None:
        return [LIVE]  # a broker that sends none: everything counts as live
    return list(ids) if isinstance(ids, list | tuple) else [int(ids)]


async def _first_failure(*coros: Any) -> None:
    """Run the coroutines together; when one ends (an error), cancel the rest and re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        exc = t.exception()
        if exc is not None:
            raise exc
