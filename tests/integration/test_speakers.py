"""Village loudspeakers end to end against a real Mosquitto: warnd's MQTT channel on one side,
simulated speakers (each its own MQTT client) on the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from channels.mqtt import MqttSettings
from devtools.demo.capgen import cap_xml
from devtools.simulators.speakers import SimConfig, SpeakerFleet
from support.speaker_support import (
    GA,
    MAIN_BROKER,
    VA,
    VB,
    VC,
    PrivateBroker,
    RecordingSms,
    county_rows,
    eventually,
    speaker,
    tag,
)
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import SystemClock
from warnd.config import County, DatabaseCfg, DeliveryCfg, Settings, SpeakersCfg
from warnd.db.models import Alert, Call, Delivery, Speaker, SpeakerCommand
from warnd.speakers.coverage import fleet_health, speaker_coverage
from warnd.speakers.service import FALLBACK_TASK, SpeakerService


@dataclass
class Stack:
    engine: App
    sms: RecordingSms
    speakers: SpeakerService
    mqtt: MqttSettings
    ids: dict[str, str]  # short name → device id

    async def fleet(self, cfg: SimConfig, names: list[str] | None = None) -> SpeakerFleet:
        ids = [self.ids[n] for n in (names or list(self.ids))]
        f = SpeakerFleet(ids, self.mqtt, cfg)
        self._fleets.append(f)
        await f.start()
        return f

    async def submit(self, identifier: str, *, status: str = "Actual", colour: str = "红色") -> int:
        now = datetime.now(UTC)
        res = await self.engine.ingestor.submit_cap(cap_xml(
            identifier, now, now + timedelta(hours=1), colour, "1小时内将出现特大暴雨", "请立即转移。",
            [VA, VB, VC], step="imminent", status=status))
        assert res.created
        return res.alert_id

    async def devices(self) -> dict[str, Speaker]:
        async with self.engine.db.session() as s:
            return {sp.device_id: sp for sp in (await s.exec(select(Speaker))).all()}

    async def commands(self, alert_id: int) -> dict[str, SpeakerCommand]:
        async with self.engine.db.session() as s:
            rows = (await s.exec(select(SpeakerCommand).where(SpeakerCommand.alert_id == alert_id))).all()
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[c.device_id]: c for c in rows}

    _fleets: list[SpeakerFleet] = field(default_factory=list)


async def make_stack(db_url: str, broker: tuple[str, int], layout: dict[str, str],
                     **speaker_cfg: object) -> Stack:
    t = tag()  # unique device ids and client id: retained states of other runs do not leak in
    ids = {name: f"T{t}-{name}" for name in layout}
    cfg = SpeakersCfg(**{"enabled": True, "host": broker[0], "port": broker[1], "client_id": f"warnd-test-{t}",
                         "ack_window_seconds": 20, "stale_after_seconds": 600, "reconnect_min_seconds": 0.2,
                         "reconnect_max_seconds": 1.0, **speaker_cfg})
    settings = Settings(county=County(code="431222"), database=DatabaseCfg(url=db_url), speakers=cfg,
                        delivery=DeliveryCfg(recipient_min_interval_seconds=0))
    sms = RecordingSms()
    engine = App.build(settings, clock=SystemClock(), channels={"sms": sms})
    now = datetime.now(UTC)
    regions, people = county_rows(now)
    async with engine.db.session() as s, s.begin():
        s.add_all(regions)
        s.add_all(people)
        s.add_all([speaker(ids[n], code, now) for n, code in layout.items()])
    await engine.start()
    assert engine.speakers is not None
    await asyncio.wait_for(engine.speakers.channel.connected.wait(), 10)
    stack = Stack(engine, sms, engine.speakers, MqttSettings(host=broker[0], port=broker[1]), ids)
    return stack


async def close_stack(stack: Stack) -> None:
    for f in stack._fleets:
        await asyncio.wait_for(f.stop(), 30)
    await asyncio.wait_for(stack.engine.stop(), 30)


@pytest.fixture
async def main_stack(db_url: str) -> AsyncIterator[Stack]:
    stack = await make_stack(db_url, MAIN_BROKER, {"A1": VA, "A2": VA, "B1": VB, "G1": GA})
    try:
        yield stack
    finally:
        await close_stack(stack)


async def _online(stack: Stack, n: int) -> bool:
    health = await fleet_health(stack.engine.db, stack.engine.clock.now(), 600)
    return health.online == n


async def test_command_reaches_device_which_plays_once_and_village_counts_as_reached(main_stack: Stack) -> None:
    stack = main_stack
    fleet = await stack.fleet(SimConfig())
    await eventually(lambda: _online(stack, 4), what="speakers online")
    alert_id = await stack.submit(f"SPK-{tag()}")

    async def all_played() -> bool:
        return (await speaker_coverage(stack.engine.db, alert_id)).played == 4

    await eventually(all_played, what="four played acks")
    cov = await speaker_coverage(stack.engine.db, alert_id)
    assert (cov.villages, cov.villages_reached, cov.not_reached, cov.fallback_calls) == (2, 2, [], 0)
    cmds = await stack.commands(alert_id)
    payload = json.loads(cmds["A1"].payload)
    assert payload["drill"] is False and payload["priority"] == 4 and payload["warning_id"] == str(alert_id)
    assert payload["text"].startswith("临灾预警") and payload["device_id"] == stack.ids["A1"]
    assert all(c.state == "played" and not c.late and c.sent_at is not None for c in cmds.values())
    assert fleet.stats.played == 4 and fleet.stats.played_twice() == []
    assert not any(FALLBACK_TASK in m.body for m in stack.sms.sent)


async def test_drill_is_marked_in_the_payload(main_stack: Stack) -> None:
    stack = main_stack
    await stack.fleet(SimConfig())
    await eventually(lambda: _online(stack, 4), what="speakers online")
    alert_id = await stack.submit(f"DRILL-{tag()}", status="Exercise")
    await eventually(lambda: _played(stack, alert_id, 4), what="played")
    payload = json.loads((await stack.commands(alert_id))["B1"].payload)
    assert payload["drill"] is True and payload["text"].startswith("【演练】")


async def _played(stack: Stack, alert_id: int, n: int) -> bool:
    return (await speaker_coverage(stack.engine.db, alert_id)).played >= n


async def test_dark_speakers_open_fallback_calls_on_the_right_officials(db_url: str) -> None:
    # A1 plays; B1 lost power (last will); G1's amplifier fails; C1 receives and never plays.
    stack = await make_stack(db_url, MAIN_BROKER, {"A1": VA, "B1": VB, "G1": GA, "C1": VC},
                             ack_window_seconds=3)
    try:
        ok = await stack.fleet(SimConfig(), ["A1", "B1"])
        await stack.fleet(SimConfig(failure_rate=1.0), ["G1"])
        await stack.fleet(SimConfig(silent_rate=1.0), ["C1"])
        await eventually(lambda: _online(stack, 4), what="speakers online")
        await ok.devices[stack.ids["B1"]].kill()

        async def b1_offline() -> bool:
            return (await stack.devices())[stack.ids["B1"]].online is False

        await eventually(b1_offline, what="last will of B1")
        health = await fleet_health(stack.engine.db, stack.engine.clock.now(), 600)
        assert health.offline == 1 and health.dark == [(stack.ids["B1"], VB, "offline")]

        alert_id = await stack.submit(f"DARK-{tag()}")

        async def settled() -> bool:
            c = await stack.commands(alert_id)
            return len(c) == 4 and c["A1"].state == "played" and c["G1"].state == "failed" \
                and c["C1"].state == "no_ack"

        await eventually(settled, what="A1 played, G1 failed, C1 no ack")
        cmds = await stack.commands(alert_id)
        assert cmds["G1"].reason == "amplifier_fault" and cmds["B1"].fallback and cmds["C1"].fallback

        async with stack.engine.db.session() as s:
            companion = (await s.exec(select(Alert).where(Alert.source == "speaker_fallback"))).one()
            calls = (await s.exec(select(Call).where(Call.alert_id == companion.id))).all()
            people = {c.person_id: c for c in calls}
            from warnd.db.models import Person
            names = {p.id: p.name for p in (await s.exec(select(Person))).all()}
        assert sorted(names[pid] for pid in people) == ["孙书记", "赵组长", "陈书记"]
        assert all(c.state == "open" and c.step == "imminent" for c in calls)

        async def texts_sent() -> bool:
            return sum(FALLBACK_TASK in m.body for m in stack.sms.sent) == 3

        await eventually(texts_sent, what="three fallback SMS")
        fallback_sms = {m.to: m.body for m in stack.sms.sent if FALLBACK_TASK in m.body}
        assert set(fallback_sms) == {"+8613900000011", "+8613900000004", "+8613900000021"}
        assert "界亭驿村" in fallback_sms["+8613900000011"]

        cov = await speaker_coverage(stack.engine.db, alert_id)
        assert cov.villages == 3 and cov.villages_reached == 1 and cov.not_reached == [VB, VC]
        assert cov.fallback_calls == 3 and cov.failed == 1 and cov.no_ack == 2  # B1 (away) and C1

        # The warning is lifted: the fallback calls stop too.
        await stack.engine.ingestor.cancel(alert_id, "test")

        async def fallback_closed() -> bool:
            async with stack.engine.db.session() as s:
                states = (await s.exec(select(Call.state).where(Call.alert_id == companion.id))).all()
            return sorted(states) == ["cancelled"] * 3

        await eventually(fallback_closed, what="fallback calls cancelled with the warning")
    finally:
        await close_stack(stack)


async def test_device_back_after_expiry_never_plays(db_url: str) -> None:
    stack = await make_stack(db_url, MAIN_BROKER, {"A1": VA}, command_ttl_seconds=2, ack_window_seconds=30)
    try:
        fleet = await stack.fleet(SimConfig())
        await eventually(lambda: _online(stack, 1), what="online")
        dev = fleet.devices[stack.ids["A1"]]
        await dev.kill()
        alert_id = await stack.submit(f"EXP-{tag()}")

        async def sent() -> bool:
            c = await stack.commands(alert_id)
            return "A1" in c and c["A1"].state == "sent"

        await eventually(sent, what="broker accepted the command")  # queued in A1's session
        await asyncio.sleep(3)  # the command expires while A1 is away
        dev.revive()
        await asyncio.wait_for(dev.connected.wait(), 10)
        await asyncio.sleep(1.5)
        assert fleet.stats.played == 0 and fleet.stats.received == 0
        assert (await stack.commands(alert_id))["A1"].state == "sent"  # never played
    finally:
        await close_stack(stack)


@pytest.fixture
def private_broker(tmp_path: Path) -> AsyncIterator[PrivateBroker]:
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    b = PrivateBroker(folder)
    b.start()
    try:
        yield b  # type: ignore[misc]
    finally:
        b.stop()


async def test_broker_down_holds_commands_and_drops_expired_ones(db_url: str, private_broker: PrivateBroker) -> None:
    stack = await make_stack(db_url, ("127.0.0.1", private_broker.port), {"A1": VA, "B1": VB},
                             command_ttl_seconds=2)
    try:
        fleet = await stack.fleet(SimConfig())
        await eventually(lambda: _online(stack, 2), what="online")
        private_broker.stop()
        await asyncio.sleep(0.5)
        first = await stack.submit(f"DOWN1-{tag()}")
        await asyncio.sleep(2.5)  # expired while the broker was unreachable
        assert {c.state for c in (await stack.commands(first)).values()} == {"expired"}
        # A second warning with a long life, also while the broker is down: held, then sent.
        stack.speakers.ttl = timedelta(hours=1)
        second = await stack.submit(f"DOWN2-{tag()}")

        async def held() -> bool:
            return [c.state for c in (await stack.commands(second)).values()] == ["pending"] * 2

        await eventually(held, what="commands held while the broker is down")
        await asyncio.sleep(1)
        assert [c.state for c in (await stack.commands(second)).values()] == ["pending"] * 2
        private_broker.start()
        await eventually(lambda: _played(stack, second, 2), what="held commands played after reconnect")
        assert fleet.stats.played == 2 and fleet.stats.received == 2  # the expired ones never left
    finally:
        await close_stack(stack)


async def test_broker_restart_mid_broadcast_loses_nothing_plays_nothing_twice(
    db_url: str, private_broker: PrivateBroker
) -> None:
    n = 300
    layout = {f"D{i:03d}": (VA, VB, VC, GA)[i % 4] for i in range(n)}
    stack = await make_stack(db_url, ("127.0.0.1", private_broker.port), layout, ack_window_seconds=120)
    try:
        fleet = await stack.fleet(SimConfig(latency=(0.05, 1.5), play_seconds=0.5))
        await eventually(lambda: _online(stack, n), what="fleet online")
        alert_id = await stack.submit(f"RST-{tag()}")
        try:
            await eventually(lambda: _played(stack, alert_id, 1), what="first plays")
        except AssertionError:
            from collections import Counter
            cmds = (await stack.commands(alert_id)).values()
            raise AssertionError(f"{Counter(c.state for c in cmds)} fleet={fleet.summary()} "
                                 f"channel={stack.speakers.channel.stats}") from None
        private_broker.stop()  # mid-broadcast: some played, some playing, some not yet received
        await asyncio.sleep(1.0)
        private_broker.start()
        try:
            await eventually(lambda: _played(stack, alert_id, n), within=90, what="every speaker played")
        except AssertionError:
            from collections import Counter
            cmds = (await stack.commands(alert_id)).values()
            raise AssertionError(f"{Counter(c.state for c in cmds)} fleet={fleet.summary()} "
                                 f"errors={fleet.stats.errors} channel={stack.speakers.channel.stats}") from None
        assert fleet.stats.played_twice() == []
        assert fleet.stats.played == n
        cov = await speaker_coverage(stack.engine.db, alert_id)
        assert cov.played == n and cov.villages_reached == cov.villages == 3
        async with stack.engine.db.session() as s:
            rows = (await s.exec(select(Delivery).where(Delivery.purpose == "warning"))).all()
        assert not any(FALLBACK_TASK in d.body for d in rows)
    finally:
        await close_stack(stack)


# --- the contract held (issue 12, part 7) -----------------------------------------------------

def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _sent(stack: Stack, alert_id: int, name: str) -> SpeakerCommand:
    async def published() -> bool:
        cmd = (await stack.commands(alert_id)).get(name)
        return cmd is not None and cmd.state == "sent"

    await eventually(published, what=f"{name}'s command published")
    return (await stack.commands(alert_id))[name]


async def test_an_ack_without_at_is_refused_as_the_contract_says(main_stack: Stack) -> None:
    stack = main_stack
    alert_id = await stack.submit(f"SPK-{tag()}")
    cmd = await _sent(stack, alert_id, "A1")
    dev = cmd.device_id
    base = {"v": 1, "cmd_id": cmd.cmd_id, "device_id": dev}
    async with aiomqtt.Client(*MAIN_BROKER, identifier=dev) as device:
        # Without `at` (required by ack.json): refused, though it says "played".
        await device.publish(f"warnd/v1/dev/{dev}/ack", json.dumps({**base, "status": "played"}), qos=1)
        await device.publish(f"warnd/v1/dev/{dev}/ack", json.dumps({**base, "status": "received", "at": _now_iso()}),
                             qos=1)

    async def moved() -> bool:
        return (await stack.commands(alert_id))["A1"].state != "sent"

    await eventually(moved, what="the valid ack applied")
    assert (await stack.commands(alert_id))["A1"].state == "received"


async def test_any_ack_counts_as_liveness(main_stack: Stack) -> None:
    stack = main_stack
    dev = stack.ids["B1"]
    async with aiomqtt.Client(*MAIN_BROKER, identifier=dev) as device:
        await device.publish(f"warnd/v1/dev/{dev}/state", json.dumps(
            {"v": 1, "online": False, "reason": "shutdown", "at": _now_iso()}), qos=1)

        async def offline() -> bool:
            return (await stack.devices())[dev].online is False

        await eventually(offline, what="the device's orderly shutdown recorded")
        alert_id = await stack.submit(f"SPK-{tag()}")
        cmd = await _sent(stack, alert_id, "B1")
        # No state, no heartbeat: only an ack. It is the device speaking, so it is alive.
        await device.publish(f"warnd/v1/dev/{dev}/ack", json.dumps(
            {"v": 1, "cmd_id": cmd.cmd_id, "device_id": dev, "status": "received", "at": _now_iso()}), qos=1)

        async def online() -> bool:
            return (await stack.devices())[dev].online is True

        await eventually(online, within=20, what="the ack counted as a sign of life")


async def test_alert_detail_shows_loudspeaker_coverage(main_stack: Stack) -> None:
    stack = main_stack
    await stack.fleet(SimConfig())
    await eventually(lambda: _online(stack, 4), what="speakers online")
    alert_id = await stack.submit(f"SPK-{tag()}")

    async def all_played() -> bool:
        return (await speaker_coverage(stack.engine.db, alert_id)).played == 4

    await eventually(all_played, what="four played acks")
    headers = bearer(await token_for(stack.engine.db, "wangzb", "duty_officer"))
    async with TestClient(TestServer(make_app(stack.engine))) as http:
        r = await http.get(f"/api/v1/alerts/{alert_id}", headers=headers)
        body = await r.json()
    assert r.status == 200
    assert body["loudspeakers"] == {
        "devices": 4, "played": 4, "played_late": 0, "failed": 0, "no_ack": 0, "expired": 0, "in_flight": 0,
        "villages": 2, "villages_reached": 2, "villages_not_reached": [], "fallback_calls": 0,
        "fallback_confirmed": 0}


def test_what_warnd_publishes_is_valid_against_the_published_schema() -> None:
    from channels.speaker_mqtt import contract_errors
    from warnd.core.speakers import PlayStyle, play_payload

    now = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    payload = play_payload(cmd_id="w17-3f9c2a1b7d4e6f80", alert_id=17, warning_ref="湖南省气象台|x", device_id="YL-GZ-0001",
                           issued_at=now, expires_at=now + timedelta(hours=1), drill=True, colour="red",
                           step="imminent", text="【演练】临灾预警：……", style=PlayStyle())
    assert contract_errors("cmd", payload) == []
    assert contract_errors("cmd", {**payload, "repeat": 0}) == ["repeat: 0 is less than the minimum of 1"]


async def test_the_devices_own_heartbeat_interval_decides_staleness(db_url: str) -> None:
    stack = await make_stack(db_url, MAIN_BROKER, {"A1": VA, "B1": VB}, stale_after_seconds=600)
    try:
        a1, b1 = stack.ids["A1"], stack.ids["B1"]
        for dev, interval in ((a1, 60), (b1, 3600)):  # each advertises its interval on connect (§4)
            async with aiomqtt.Client(*MAIN_BROKER, identifier=dev) as device:
                await device.publish(f"warnd/v1/dev/{dev}/state", json.dumps(
                    {"v": 1, "online": True, "at": _now_iso(), "hb_interval_s": interval}), qos=1)

        async def advertised() -> bool:
            d = await stack.devices()
            return (d[a1].hb_interval_s, d[b1].hb_interval_s) == (60, 3600)

        await eventually(advertised, what="the advertised intervals stored")
        now = datetime.now(UTC)
        async with stack.engine.db.session() as s, s.begin():  # then they fall silent for a while
            for dev, silent in ((a1, 300), (b1, 900)):
                sp = await s.get(Speaker, dev)
                assert sp is not None
                sp.last_seen_at = now - timedelta(seconds=silent)
        # A1 missed five of its 60 s heartbeats: stale, though within the configured 600 s.
        # B1 beats hourly: 15 minutes of silence is normal, though beyond the configured 600 s.
        health = await fleet_health(stack.engine.db, now, 600)
        assert (health.online, health.stale, [d for d, _, _ in health.dark]) == (1, 1, [a1])
        alert_id = await stack.submit(f"SPK-{tag()}")
        a, b = await _sent(stack, alert_id, "A1"), await _sent(stack, alert_id, "B1")
        assert (a.fallback, b.fallback) == (True, False)
    finally:
        await close_stack(stack)


async def test_a_fallback_closes_when_the_dark_speaker_plays_within_its_window(db_url: str) -> None:
    stack = await make_stack(db_url, MAIN_BROKER, {"A1": VA}, ack_window_seconds=60)
    try:
        alert_id = await stack.submit(f"SPK-{tag()}")  # A1 never seen: dark, the fallback opens at once
        cmd = await _sent(stack, alert_id, "A1")
        assert cmd.fallback

        async def fallback_calls() -> list[Call]:
            async with stack.engine.db.session() as s:
                comp = (await s.exec(select(Alert).where(Alert.fallback_for_id == alert_id))).one()
                return list((await s.exec(select(Call).where(Call.alert_id == comp.id))).all())

        assert [c.state for c in await fallback_calls()] == ["open"]
        dev = cmd.device_id
        async with aiomqtt.Client(*MAIN_BROKER, identifier=dev) as device:  # it comes back and plays, in time
            for status in ("received", "playing", "played"):
                await device.publish(f"warnd/v1/dev/{dev}/ack", json.dumps(
                    {"v": 1, "cmd_id": cmd.cmd_id, "device_id": dev, "status": status, "at": _now_iso()}), qos=1)

        async def closed() -> bool:
            return [c.state for c in await fallback_calls()] == ["cancelled"]

        await eventually(closed, within=20, what="the fallback call closed")
        played = (await stack.commands(alert_id))["A1"]
        assert played.state == "played" and not played.late
        cov = await speaker_coverage(stack.engine.db, alert_id)
        assert (cov.villages_reached, cov.not_reached) == (1, [])
    finally:
        await close_stack(stack)


async def test_a_cancelled_warning_sends_a_stop_to_the_speaker_playing_it(main_stack: Stack) -> None:
    from channels.speaker_mqtt import contract_errors

    stack = main_stack
    dev = stack.ids["A1"]
    async with aiomqtt.Client(*MAIN_BROKER, identifier=dev) as device:
        await device.subscribe(f"warnd/v1/dev/{dev}/cmd", qos=1)
        alert_id = await stack.submit(f"SPK-{tag()}")
        cmd = await _sent(stack, alert_id, "A1")
        for status in ("received", "playing"):
            await device.publish(f"warnd/v1/dev/{dev}/ack", json.dumps(
                {"v": 1, "cmd_id": cmd.cmd_id, "device_id": dev, "status": status, "at": _now_iso()}), qos=1)

        async def playing() -> bool:
            return (await stack.commands(alert_id))["A1"].state == "playing"

        await eventually(playing, what="the speaker playing")
        await stack.engine.ingestor.cancel(alert_id, "雨情减弱，预警解除")
        stack.engine.kick()
        stop: dict[str, object] = {}
        async with asyncio.timeout(30):
            async for m in device.messages:
                body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                if body.get("type") == "stop":
                    stop = body
                    break
    assert stop["stops"] == cmd.cmd_id and stop["device_id"] == dev and stop["warning_id"] == str(alert_id)
    assert contract_errors("stop", stop) == []

    async def recorded() -> bool:
        c = (await stack.commands(alert_id))["A1"]
        return c.state == "cancelled" and c.stop_sent_at is not None

    await eventually(recorded, what="the stop recorded")


async def test_after_a_restart_only_unplayed_unexpired_commands_go_out(
    db_url: str, private_broker: PrivateBroker
) -> None:
    """warnd stopped mid-broadcast (its commands still pending, the broker unreachable): the
    next warnd publishes what is owed and still in force — not what played before the stop,
    not what expired while it was down."""
    broker = ("127.0.0.1", private_broker.port)
    stack = await make_stack(db_url, broker, {"A1": VA, "B1": VB, "C1": VC})
    try:
        private_broker.stop()
        alert_id = await stack.submit(f"RESTART-{tag()}")

        async def planned() -> bool:
            return [c.state for c in (await stack.commands(alert_id)).values()] == ["pending"] * 3

        await eventually(planned, what="commands planned, held while the broker is away")
        cmds = await stack.commands(alert_id)
    finally:
        await close_stack(stack)

    again = App.build(stack.engine.settings, clock=SystemClock(), channels={"sms": RecordingSms()})
    now = datetime.now(UTC)
    async with again.db.session() as s, s.begin():  # what the stop left behind
        played = await s.get(SpeakerCommand, cmds["A1"].id)
        expired = await s.get(SpeakerCommand, cmds["C1"].id)
        assert played is not None and expired is not None
        played.state, played.played_at = "played", now  # acked just before the stop
        expired.expires_at = now - timedelta(seconds=1)  # its life ran out while warnd was down
    private_broker.start()
    await again.start()
    assert again.speakers is not None
    restarted = Stack(again, RecordingSms(), again.speakers, stack.mqtt, stack.ids)
    try:
        fleet = await restarted.fleet(SimConfig())
        await eventually(lambda: _played(restarted, alert_id, 2), what="B1 played after the restart")
        assert again.speakers.channel.stats.published == 1
        assert fleet.stats.played == 1 and fleet.stats.received == 1
        after = await restarted.commands(alert_id)
        assert (after["A1"].state, after["B1"].state) == ("played", "played")
        assert after["C1"].state in ("pending", "expired") and after["C1"].sent_at is None
    finally:
        await close_stack(restarted)
