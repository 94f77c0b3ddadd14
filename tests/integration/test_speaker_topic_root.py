"""`[speakers] topic_root`: counties sharing one broker (the real Mosquitto on 127.0.0.1:1883)
without sharing topics. warnd's loudspeaker channel and the simulated speakers of each county
live under their county's root: a command published under one root never reaches the other
county's speakers, even one with the same device id, and each county's warnd hears only its
own speakers' acks. The default root keeps today's topics exactly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest
from pydantic import ValidationError

from channels.mqtt import MqttSettings
from channels.speaker_mqtt import (
    DeviceMessage,
    OutgoingCommand,
    SpeakerMqtt,
    cmd_topic,
    contract_errors,
    parse_message,
)
from devtools.simulators.speakers import SimConfig, SpeakerFleet
from support.speaker_support import tag
from warnd.config import SpeakersCfg
from warnd.core.speakers import PlayStyle, play_payload

BROKER = ("127.0.0.1", 1883)


def test_the_default_root_keeps_todays_topics() -> None:
    cfg = SpeakersCfg(enabled=True)
    assert cfg.topic_root == "" and cfg.mqtt("431222").speaker_root == "warnd/v1/dev"
    assert cmd_topic("DEV-1", cfg.mqtt("431222").speaker_root) == "warnd/v1/dev/DEV-1/cmd"
    rooted = SpeakersCfg(enabled=True, topic_root="county/431222").mqtt("431222", "a")
    assert rooted.speaker_root == "county/431222/warnd/v1/dev"
    assert cmd_topic("DEV-1", rooted.speaker_root) == "county/431222/warnd/v1/dev/DEV-1/cmd"
    ack = json.dumps({"v": 1, "device_id": "DEV-1", "cmd_id": "c1", "status": "played",
                      "at": "2026-07-01T10:00:00+08:00"}).encode()
    assert parse_message("county/431222/warnd/v1/dev/DEV-1/ack", ack, root=rooted.speaker_root) is not None
    # Another county's topic, or the default one, is not a message of this root (and vice versa).
    assert parse_message("county/431223/warnd/v1/dev/DEV-1/ack", ack, root=rooted.speaker_root) is None
    assert parse_message("warnd/v1/dev/DEV-1/ack", ack, root=rooted.speaker_root) is None
    assert parse_message("county/431222/warnd/v1/dev/DEV-1/ack", ack) is None


@pytest.mark.parametrize("root", ["/county", "county/", "county//431222", "county/+", "county/#", "$SYS/x",
                                  "county /1", "a\x00b"])
def test_a_root_that_is_not_plain_topic_levels_is_refused(root: str) -> None:
    with pytest.raises(ValidationError, match="topic_root"):
        SpeakersCfg(enabled=True, topic_root=root)


class County:
    """One county's warnd loudspeaker channel with a fixed set of commands to publish."""

    def __init__(self, root: str, client: str, commands: Sequence[OutgoingCommand]) -> None:
        self.cfg = MqttSettings(host=BROKER[0], port=BROKER[1], client_id=client, session_expiry_seconds=0,
                                topic_root=root)
        self.todo = list(commands)
        self.got: list[DeviceMessage] = []
        self.changed = asyncio.Condition()
        self.channel = SpeakerMqtt(self.cfg, self)

    async def pending(self, limit: int) -> Sequence[OutgoingCommand]:
        return self.todo[:limit]

    async def published(self, keys: Sequence[int]) -> None:
        self.todo = [c for c in self.todo if c.key not in keys]

    async def on_messages(self, msgs: Sequence[DeviceMessage]) -> None:
        async with self.changed:
            self.got.extend(msgs)
            self.changed.notify_all()

    def played(self) -> set[tuple[str, str]]:
        return {(m.device_id, m.data["cmd_id"]) for m in self.got if m.kind == "ack" and m.data["status"] == "played"}


def speakers_cfg(root: str) -> MqttSettings:
    return MqttSettings(host=BROKER[0], port=BROKER[1], topic_root=root, session_expiry_seconds=0)


def command(key: int, device: str, cmd_id: str) -> OutgoingCommand:
    now = datetime.now(UTC)
    payload = play_payload(cmd_id=cmd_id, alert_id=1, warning_ref="TR-1", device_id=device, issued_at=now,
                           expires_at=now + timedelta(minutes=10), drill=True, colour="red", step="imminent",
                           text="演练：请立即转移。", style=PlayStyle())
    assert contract_errors("cmd", payload) == []
    return OutgoingCommand(key=key, device_id=device, payload=json.dumps(payload, ensure_ascii=False).encode(),
                           expiry_seconds=600)


async def test_two_roots_on_one_broker_do_not_see_each_others_commands() -> None:
    t = tag()
    root_a, root_b = f"county/A{t}", f"county/B{t}"
    only_a, only_b = f"TA{t}", f"TB{t}"  # a speaker of each county
    # County A also addresses a device id that exists only in county B: under A's root it
    # reaches no one.
    a = County(root_a, f"warnd-A{t}", [command(1, only_a, f"a-{t}-1"), command(2, only_b, f"a-{t}-2")])
    b = County(root_b, f"warnd-B{t}", [command(1, only_b, f"b-{t}-1")])
    sim = SimConfig(failure_rate=0.0, offline_share=0.0, latency=(0.0, 0.0), play_seconds=0.0,
                    heartbeat_seconds=3600)
    fleet_a = SpeakerFleet([only_a], speakers_cfg(root_a), sim)
    fleet_b = SpeakerFleet([only_b], speakers_cfg(root_b), sim)
    # An observer of the default topics: nothing of either county appears there.
    observer = aiomqtt.Client(BROKER[0], BROKER[1], identifier=f"obs-{t}", protocol=aiomqtt.ProtocolVersion.V5)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with observer:
            await observer.subscribe("warnd/v1/dev/#", qos=1)
            await fleet_a.start()
            await fleet_b.start()
            tasks = [asyncio.create_task(c.channel.run()) for c in (a, b)]
            async with asyncio.timeout(20):
                async with a.changed:
                    await a.changed.wait_for(lambda: (only_a, f"a-{t}-1") in a.played())
                async with b.changed:
                    await b.changed.wait_for(lambda: (only_b, f"b-{t}-1") in b.played())
            assert a.todo == [] and b.todo == []  # the broker accepted all three commands
            # Each speaker got exactly its own county's command.
            assert set(fleet_a.stats.plays) == {(only_a, f"a-{t}-1")}
            assert set(fleet_b.stats.plays) == {(only_b, f"b-{t}-1")}
            assert fleet_a.stats.received == 1 and fleet_b.stats.received == 1
            # Each warnd heard only its own speakers.
            assert {m.device_id for m in a.got} == {only_a}
            assert {m.device_id for m in b.got} == {only_b}
            # Nothing appeared under the default root: a marker published there after all of
            # the above (each publish already acknowledged by the broker) is the first
            # message of this test the observer reads.
            await observer.publish(f"warnd/v1/dev/MARK{t}/hb", b"marker", qos=1)
            async with asyncio.timeout(10):
                async for m in observer.messages:
                    if t in str(m.topic):
                        assert str(m.topic) == f"warnd/v1/dev/MARK{t}/hb"
                        break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await fleet_a.stop()
        await fleet_b.stop()
        # Leave no retained acks or states behind on the shared broker.
        async with aiomqtt.Client(BROKER[0], BROKER[1], identifier=f"clean-{t}") as clean:
            for root, dev in ((root_a, only_a), (root_b, only_b)):
                await clean.publish(f"{root}/warnd/v1/dev/{dev}/state", b"", qos=1, retain=True)
                await clean.publish(f"{root}/warnd/v1/dev/{dev}/ack", b"", qos=1, retain=True)
