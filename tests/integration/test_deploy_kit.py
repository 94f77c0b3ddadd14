"""The deploy kit (issue 12, part 2): the systemd unit as systemd reads it, the broker config and
ACL of deploy/mosquitto run by a real Mosquitto (each device confined to its own topics, warnd
sees them all, anonymous clients refused in production), and the compose file's wiring."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
DEPLOY = CHECKOUT / "deploy"


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_starts_like_a_service_should() -> None:
    d = _directives((DEPLOY / "warnd.service").read_text(encoding="utf-8"))
    assert d["EnvironmentFile"] == ["-/etc/warnd/env"]  # optional: warnd starts without it
    assert d["StartLimitBurst"] == ["5"] and d["StartLimitIntervalSec"] == ["300"]
    assert d["Restart"] == ["on-failure"] and d["LimitNOFILE"] == ["65536"]
    assert d["User"] == ["warnd"] and d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["true"]
    assert d["ProtectHome"] == ["true"] and d["PrivateTmp"] == ["true"] and d["StateDirectory"] == ["warnd"]
    assert d["ExecStart"] == ["/opt/warnd/.venv/bin/warnd serve"] and d["Environment"] == ["WARND_CONFIG=/etc/warnd"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_reads_the_unit_without_complaint(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, with the venv's binary (absent here) replaced by
    one that exists: any other complaint (unknown directive, bad value) fails."""
    text = (DEPLOY / "warnd.service").read_text(encoding="utf-8").replace("/opt/warnd/.venv/bin/warnd", "/bin/true")
    unit = tmp_path / "warnd.service"
    unit.write_text(text, encoding="utf-8")
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if "warnd.service" in ln]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broker_files(tmp_path: Path, auth: Path) -> tuple[str, int]:
    """deploy/mosquitto/mosquitto.conf with its paths moved into `tmp_path`, a free port, and
    `auth` as conf.d/auth.conf. Returns the broker binary and the port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto not installed")
    port = _free_port()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(DEPLOY / "mosquitto" / "acl", tmp_path / "acl")
    (tmp_path / "passwd").write_text("", encoding="utf-8")
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    for old, new in [("listener 1883", f"listener {port} 127.0.0.1"), ("/mosquitto/data/", f"{tmp_path}/data/"),
                     ("/mosquitto/config/", f"{tmp_path}/")]:
        assert old in conf
        conf = conf.replace(old, new)
    if os.geteuid() == 0:  # run as root, mosquitto drops to user `mosquitto`, who cannot read pytest's tmp
        conf = "user root\n" + conf
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    (tmp_path / "conf.d" / "auth.conf").write_text(
        auth.read_text(encoding="utf-8").replace("/mosquitto/config/", f"{tmp_path}/"), encoding="utf-8")
    return binary, port


@contextlib.asynccontextmanager
async def broker(tmp_path: Path, auth: Path) -> AsyncIterator[int]:
    """The deploy kit's broker config run by the real Mosquitto (see _broker_files)."""
    binary, port = _broker_files(tmp_path, auth)
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(tmp_path / "mosquitto.conf"),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        while b"running" not in (line := await asyncio.wait_for(proc.stdout.readline(), 10)):
            assert line, "mosquitto exited: the deploy config does not load"
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _drain(client: aiomqtt.Client, seconds: float) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for m in client.messages:
                got.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
    return got


async def test_the_acl_confines_each_device_to_its_own_topics(tmp_path: Path) -> None:
    async with broker(tmp_path, DEPLOY / "mosquitto" / "demo-auth.conf") as port:
        async with aiomqtt.Client("127.0.0.1", port, identifier="warnd-test", username="warnd") as warnd, \
                aiomqtt.Client("127.0.0.1", port, identifier="DEV-A") as dev_a, \
                aiomqtt.Client("127.0.0.1", port, identifier="DEV-B") as dev_b:
            await warnd.subscribe("warnd/v1/dev/+/ack", qos=1)
            await dev_a.subscribe("warnd/v1/dev/DEV-A/cmd", qos=1)
            await dev_a.subscribe("warnd/v1/dev/DEV-B/cmd", qos=1)  # not its own: the ACL drops it
            await dev_a.publish("warnd/v1/dev/DEV-A/ack", b"own", qos=1)
            await warnd.publish("warnd/v1/dev/DEV-A/cmd", b"play-a", qos=1)
            await warnd.publish("warnd/v1/dev/DEV-B/cmd", b"play-b", qos=1)
            await dev_b.publish("warnd/v1/dev/DEV-B/ack", b"b-own", qos=1)
            seen_by_warnd = await _drain(warnd, 2.0)
            seen_by_a = await _drain(dev_a, 0.5)
            # Acknowledging for another device: the broker refuses it (PUBACK "not authorized",
            # on which the client library drops the connection) and warnd never sees it.
            with contextlib.suppress(aiomqtt.MqttError):
                await dev_a.publish("warnd/v1/dev/DEV-B/ack", b"forged", qos=1)
                await _drain(dev_a, 0.5)
            forged = await _drain(warnd, 1.0)
    assert forged == []
    assert sorted(seen_by_warnd) == [("warnd/v1/dev/DEV-A/ack", b"own"), ("warnd/v1/dev/DEV-B/ack", b"b-own")]
    assert seen_by_a == [("warnd/v1/dev/DEV-A/cmd", b"play-a")]


async def test_the_production_broker_refuses_clients_without_a_password(tmp_path: Path) -> None:
    async with broker(tmp_path, DEPLOY / "mosquitto" / "conf.d" / "auth.conf") as port:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port, identifier="DEV-A"):
                pass


def test_compose_wires_the_database_the_broker_config_and_the_demo() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    for mounted in re.findall(r"- (\./[^:]+):/", text):
        assert mounted == "./warnd-demo" or (DEPLOY / mounted).is_file(), mounted  # the demo's output: created
    assert "./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf" in text
    assert "./mosquitto/acl:/mosquitto/config/acl" in text
    assert re.search(r"--database\n\s+- postgresql://warnd:[^@]+@db/warnd", text)
    assert re.search(r"--broker\n\s+- mqtt:1883", text)
    assert (DEPLOY / "Dockerfile").exists()
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=30).returncode == 0:
        r = subprocess.run(["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr


def test_the_proxy_example_has_tls_and_slow_client_limits() -> None:
    text = (DEPLOY / "nginx" / "warnd.conf").read_text(encoding="utf-8")
    for directive in ("listen 443 ssl", "ssl_certificate ", "client_header_timeout 10s", "client_body_timeout 10s",
                      "client_max_body_size 6m", "proxy_pass http://warnd"):
        assert directive in text, directive
