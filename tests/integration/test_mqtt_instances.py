"""Several warnd instances on one broker (real Mosquitto): each connects as its own client
(`[server] instance`), and a device's ack reaches exactly one of them through the shared
subscription group; an instance that connects later still reads the retained acks."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiomqtt
import pytest

from channels.mqtt import MqttSettings
from channels.speaker_mqtt import DeviceMessage, OutgoingCommand, SpeakerMqtt, device_topic
from support.speaker_support import PrivateBroker, tag
from warnd.config import SpeakersCfg

ACKS = 30


class Recorder:
    """A SpeakerHandler that only records what it was handed."""

    def __init__(self, changed: asyncio.Condition) -> None:
        self.got: list[DeviceMessage] = []
        self.changed = changed

    async def pending(self, limit: int) -> Sequence[OutgoingCommand]:
        return []

    async def published(self, keys: Sequence[int]) -> None:
        return None

    async def on_messages(self, msgs: Sequence[DeviceMessage]) -> None:
        async with self.changed:
            self.got.extend(msgs)
            self.changed.notify_all()


async def wait_for(condition: asyncio.Condition, predicate: object, timeout: float = 20) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout), condition:
        await condition.wait_for(predicate)  # type: ignore[arg-type]


def test_each_instance_connects_as_its_own_client() -> None:
    cfg = SpeakersCfg(enabled=True)
    assert cfg.mqtt("431222").client_id == "warnd-431222"  # one instance: unchanged
    assert cfg.mqtt("431222", "b").client_id == "warnd-431222-b"
    assert cfg.mqtt("431222", "b").share_group == cfg.mqtt("431222", "c").share_group == "warnd-431222"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Mosquitto of this test's own: the shared one holds every other test's retained acks
    and states, which a late instance would have to read through first."""
    b = PrivateBroker(tmp_path)
    b.start()
    try:
        yield "127.0.0.1", b.port
    finally:
        b.stop()


async def test_an_ack_is_handled_by_one_instance_and_retained_acks_reach_a_late_one(broker: tuple[str, int]) -> None:
    t = tag()
    devices = [f"T{t}-{i:02d}" for i in range(ACKS)]
    changed = asyncio.Condition()
    handlers = [Recorder(changed) for _ in range(3)]
    channels = [SpeakerMqtt(MqttSettings(host=broker[0], port=broker[1], client_id=f"warnd-test-{t}-{n}",
                                         share_group=f"warnd-test-{t}", session_expiry_seconds=0), h)
                for n, h in enumerate(handlers)]
    tasks = [asyncio.create_task(ch.run()) for ch in channels[:2]]
    device = aiomqtt.Client(broker[0], broker[1], identifier=f"dev-{t}",
                            protocol=aiomqtt.ProtocolVersion.V5)
    try:
        async with asyncio.timeout(20):
            for ch in channels[:2]:
                await ch.connected.wait()
        async with device:
            for d in devices:
                ack = {"v": 1, "device_id": d, "cmd_id": f"w1-{d}", "status": "played",
                       "at": "2026-07-01T10:00:00+08:00"}
                await device.publish(device_topic(d, "ack"), json.dumps(ack), qos=1, retain=True)

            live = handlers[:2]

            def ours(h: Recorder) -> list[DeviceMessage]:  # the broker holds other tests' retained acks
                return [m for m in h.got if m.device_id in devices]

            await wait_for(changed, lambda: sum(len(ours(x)) for x in live) >= ACKS)
            handled = Counter(m.device_id for h in live for m in ours(h))
            assert handled == dict.fromkeys(devices, 1), "an ack was handled by both instances (or by none)"
            assert all(not m.retained for h in live for m in ours(h))
            assert all(ours(h) for h in live)  # the group shares the work

            # A third instance starting now reads each device's retained ack once.
            tasks.append(asyncio.create_task(channels[2].run()))
            late = handlers[2]
            await wait_for(late.changed, lambda: len({m.device_id for m in ours(late)}) == ACKS)
            assert Counter(m.device_id for m in ours(late)) == dict.fromkeys(devices, 1)
            assert all(m.retained for m in ours(late))

            for d in devices:  # leave no retained acks behind
                await device.publish(device_topic(d, "ack"), b"", qos=1, retain=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
