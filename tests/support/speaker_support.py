"""Helpers for the loudspeaker tests: a private Mosquitto, a recording SMS channel, a county."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web

from channels.base import ChannelBase, InboundSink, OutboundMessage, SendReceipt
from warnd.db.models import Person, Region, Speaker

MAIN_BROKER = ("127.0.0.1", 1883)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """A Mosquitto of our own on a free port, with persistence in a temp folder, so a test can
    stop and restart it (sessions and queued messages survive, as in production)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {folder}/mosquitto.log\n"
            # Started as root, Mosquitto drops to user `mosquitto`, which cannot write here.
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private mosquitto did not start")

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class RecordingSms(ChannelBase):
    """An SMS channel that records what it is asked to send (the SMS path has its own tests)."""

    kind: str = "sms"
    provider: str = "recording"
    sent: list[OutboundMessage] = field(default_factory=list)

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        self.sent.append(msg)
        return SendReceipt(self.provider, f"r{len(self.sent)}")

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        return None

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        return []

    async def close(self) -> None:
        pass


def tag() -> str:
    return uuid.uuid4().hex[:6].upper()


COUNTY = "431222"
TOWN = "431222100"
VA, VB, VC = "431222100200", "431222100201", "431222100202"
GA = "431222100200001"


def county_rows(now: datetime) -> tuple[list[Region], list[Person]]:
    regions = [
        Region(code=COUNTY, name="沅陵县", level="county"),
        Region(code=TOWN, name="官庄镇", level="township", parent_code=COUNTY),
        Region(code=VA, name="辰龙关村", level="village", parent_code=TOWN),
        Region(code=VB, name="界亭驿村", level="village", parent_code=TOWN),
        Region(code=VC, name="麻溪铺村", level="village", parent_code=TOWN),
        Region(code=GA, name="辰龙关村一组", level="group", parent_code=VA),
    ]

    def p(phone: str, name: str, role: str, region: str) -> Person:
        return Person(key=phone, name=name, phone=phone, role=role, region_code=region, updated_at=now)

    people = [
        p("+8613900000001", "张书记", "village_secretary", VA),
        p("+8613900000002", "李主任", "village_head", VA),
        p("+8613900000003", "王网格", "grid_worker", VA),
        p("+8613900000011", "陈书记", "village_secretary", VB),
        p("+8613900000012", "周主任", "village_head", VB),
        p("+8613900000013", "吴网格", "grid_worker", VB),
        p("+8613900000021", "孙书记", "village_secretary", VC),
        p("+8613900000022", "郑主任", "village_head", VC),
        p("+8613900000023", "冯网格", "grid_worker", VC),
        p("+8613900000004", "赵组长", "group_leader", GA),
        p("+8613900000005", "刘镇长", "township_head", TOWN),
        p("+8613900000009", "值班员", "duty_officer", COUNTY),
    ]
    return regions, people


def speaker(device_id: str, region: str, now: datetime) -> Speaker:
    return Speaker(device_id=device_id, region_code=region, capabilities=["tts"], updated_at=now)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def mosquitto_available() -> bool:
    return bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))
