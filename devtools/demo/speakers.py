"""The demo's village loudspeakers: a private Mosquitto (so the demo never touches a broker
the machine already runs) and `warnd-dev speakers simulate` in a second process, one real MQTT
client per speaker, started while the quiet hours of the storm run."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# Thousands of devices ack through one warnd client: never drop queued messages (docs/mqtt.md §8).
max_queued_messages 0
max_inflight_messages 0
log_dest none
"""


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SpeakerFleetProcess:
    broker: asyncio.subprocess.Process | None  # None: a broker run by someone else (--broker)
    fleet: asyncio.subprocess.Process | None
    port: int
    host: str = "127.0.0.1"

    @classmethod
    def external(cls, address: str) -> SpeakerFleetProcess:
        host, _, port = address.rpartition(":")
        return cls(None, None, int(port), host or "127.0.0.1")

    @classmethod
    async def start_broker(cls, workdir: Path) -> SpeakerFleetProcess:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (./run demo installs it)")
        port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port), encoding="utf-8")
        broker = await asyncio.create_subprocess_exec(binary, "-c", str(conf),
                                                      stdout=asyncio.subprocess.DEVNULL,
                                                      stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):  # the broker binds within milliseconds; bounded start-up check
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return cls(broker, None, port)
            await asyncio.sleep(0.05)
        broker.kill()
        raise RuntimeError("the demo's mosquitto did not start")

    async def start_fleet(self, database_url: str, seed: int) -> None:
        self.fleet = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devtools.cli", "speakers", "simulate", "--from-database",
            "--database", database_url, "--broker", f"{self.host}:{self.port}",
            "--failure-rate", "0.03", "--silent-rate", "0.01", "--offline-share", "0.02",
            "--latency", "0.5", "--play-seconds", "0.2", "--heartbeat", "3600", "--seed", str(seed),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def wait_ready(self) -> str:
        """Until the simulator reports every speaker connected ("N simulated speakers on …")."""
        assert self.fleet is not None and self.fleet.stdout is not None
        while True:
            line = (await self.fleet.stdout.readline()).decode("utf-8", "replace").strip()
            if not line:
                raise RuntimeError("the speaker simulator exited before its speakers were up")
            if "simulated speakers on" in line:
                return line

    async def stop(self) -> None:
        for proc in (self.fleet, self.broker):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
