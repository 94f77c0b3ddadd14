"""Connection abuse against a real `warnd serve` (issue 10, part 2).

The attacker (tests/support/abuser.py, its own process, from eight loopback addresses) keeps
2,000 slow connections going, half dripping their headers and half their bodies, reopening
each as soon as it is dropped, while flooding the webhooks with unsigned posts, 5 MB ones
among them. Meanwhile a normal client (from another address, one request at a time on fresh
connections, like a provider) must get /healthz, a signed Twilio webhook and the API
answered within a second, every time. The server's descriptors stay near its connection
limit, slow requests are cut at the header and body deadlines, memory stays bounded and no
traceback is logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

TOKEN = "flood-test-token-0123456789"
AUTH_TOKEN = "flood-twilio-auth-token"
SLOW = 2000
MAX_CONNECTIONS = 1000  # below SLOW: the guard has to push slow connections out
HEADER_TIMEOUT = BODY_TIMEOUT = 2.0
ATTACK_SECONDS = 10.0
NORMAL = "127.0.0.2"  # the normal client's own address; the attacker uses 127.0.0.10-17
PUBLIC = "https://warnd.example.gov.cn"  # public_base_url: what providers sign
ABUSER = Path(__file__).resolve().parents[1] / "support" / "abuser.py"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # the server (our child) needs its connections plus an accept burst
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    (tmp_path / "warnd.toml").write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'warnd.db'}"
[server]
host = "127.0.0.1"
port = 0
public_base_url = "{PUBLIC}"
max_connections = {MAX_CONNECTIONS}
header_timeout_seconds = {HEADER_TIMEOUT}
body_timeout_seconds = {BODY_TIMEOUT}
[api]
tokens = ["{TOKEN}"]
[sms]
provider = "twilio"
[sms.twilio]
account_sid = "AC00000000000000000000000000000000"
auth_token = "{AUTH_TOKEN}"
from_number = "+15005550006"
api_base_url = "http://127.0.0.1:9"
""", encoding="utf-8")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warnd.cli", "--config", str(tmp_path / "warnd.toml"), "serve",
            stdout=asyncio.subprocess.PIPE, stderr=out)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            while b"warnd serving on" not in (line := await proc.stdout.readline()):
                assert line, log.read_text()[-3000:]
        yield Server(proc, int(line.decode().rsplit(":", 1)[1]), log)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def session() -> aiohttp.ClientSession:
    """A provider-like client: its own address, a fresh connection per request."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, local_addr=(NORMAL, 0)),
                                 timeout=aiohttp.ClientTimeout(total=5))


async def normal_client(server: Server, stop: asyncio.Event) -> list[tuple[str, int, float]]:
    validator = RequestValidator(AUTH_TOKEN)
    url = server.base + "/webhooks/twilio/sms/status"
    signed_url = PUBLIC + "/webhooks/twilio/sms/status"  # Twilio signs the public URL
    out: list[tuple[str, int, float]] = []
    async with session() as http:
        n = 0
        while not stop.is_set():
            n += 1
            params = {"MessageSid": f"SM{n:032d}", "MessageStatus": "delivered"}
            signed = {"X-Twilio-Signature": validator.compute_signature(signed_url, params)}
            for what, request in (
                ("healthz", http.get(server.base + "/healthz")),
                ("webhook", http.post(url, data=params, headers=signed)),
                ("api", http.get(server.base + "/api/v1/alerts/999", headers={"Authorization": f"Bearer {TOKEN}"})),
            ):
                t0 = time.monotonic()
                try:
                    async with request as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                out.append((what, status, time.monotonic() - t0))
            await asyncio.sleep(0.1)
    return out


@pytest.mark.slow
async def test_slow_connections_and_a_webhook_flood_leave_a_normal_client_served(server: Server) -> None:
    pid = server.proc.pid
    async with session() as http:  # warm up: the first requests import and allocate
        for _ in range(3):
            assert (await http.get(server.base + "/healthz")).status == 200
    base_rss = rss_mib(pid)

    # The attacker stands for another machine: niced, so it does not take the server's CPU.
    abuser = await asyncio.create_subprocess_exec(
        "nice", "-n", "19", sys.executable, str(ABUSER), "--port", str(server.port), "--slow", str(SLOW),
        "--flooders", "8", "--clients", "8", "--seconds", str(ATTACK_SECONDS), "--drip", "1", "--pause", "1",
        stdout=asyncio.subprocess.PIPE)
    assert abuser.stdout is not None
    assert json.loads(await abuser.stdout.readline()) == {"started": True}
    await asyncio.sleep(1.5)  # the slow connections are open before the normal client starts
    stop = asyncio.Event()
    normal = asyncio.create_task(normal_client(server, stop))
    peak_rss, peak_fds = base_rss, 0
    while abuser.returncode is None and not abuser.stdout.at_eof():
        peak_rss, peak_fds = max(peak_rss, rss_mib(pid)), max(peak_fds, open_fds(pid))
        try:
            async with asyncio.timeout(0.2):
                await abuser.wait()
        except TimeoutError:
            pass
    stop.set()
    requests = await normal
    attack = json.loads((await abuser.stdout.read()).decode())

    latency = {w: max(s for ww, _, s in requests if ww == w) for w in ("healthz", "webhook", "api")}
    statuses = Counter((w, st) for w, st, _ in requests)
    report = (f"attack: {attack}; normal requests: {dict(statuses)}, max latency "
              + ", ".join(f"{w} {s:.3f} s" for w, s in latency.items())
              + f"; server RSS {base_rss:.0f} MiB -> peak {peak_rss:.0f} MiB, peak open descriptors {peak_fds}")
    print(report)
    n = len(requests) // 3
    assert n >= 20, report
    assert statuses == Counter({("healthz", 200): n, ("webhook", 204): n, ("api", 404): n}), report
    assert max(latency.values()) < 1.0, report
    # The attack was real: every slow connection was opened, many were cut and reopened, and
    # the flood's unsigned 5 MB and forged posts were refused (413 / 403), not read.
    assert attack["opened"] > SLOW and attack["dropped"] > SLOW // 2, report
    assert attack["answers"].get("HTTP/1.1 408 Request Timeout", 0) > 0, report
    assert attack["lifetime_max"] < HEADER_TIMEOUT + BODY_TIMEOUT + 2.0, report
    assert attack["flood"].get("5MB 413", 0) > 10 and attack["flood"].get("forged 403", 0) > 10, report
    # Bounded: descriptors near the connection limit (plus an accept burst), memory far below
    # what 2,000 connections with 5 MB bodies would take.
    assert peak_fds < MAX_CONNECTIONS + 600, report
    assert peak_rss - base_rss < 120, report

    async with session() as http:  # still up
        assert (await http.get(server.base + "/healthz")).status == 200
    await asyncio.sleep(HEADER_TIMEOUT + 1.0)
    assert open_fds(pid) < 100  # every abusive connection is gone
    log = server.log.read_text()
    assert "Traceback" not in log and "Error handling request" not in log, log[-3000:]


async def test_header_and_body_deadlines(server: Server) -> None:
    """One slow request of each kind: cut at the header deadline, or answered 408 at the
    body deadline; a 5 MB webhook declared in Content-Length is refused before it is read."""
    async def slow(head: bytes, drip: bytes) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        t0 = time.monotonic()
        writer.write(head)
        answer = asyncio.create_task(reader.read())
        while not answer.done() and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.2)
            writer.write(drip)
        writer.close()
        return time.monotonic() - t0, await answer

    header_took, answer = await slow(b"POST /webhooks/twilio/sms/inbound HTTP/1.1\r\nHost: x\r\n", b"X-Pad: 1\r\n")
    # Cut at its timeout (not before; not never: a loaded machine may take a few seconds more).
    assert HEADER_TIMEOUT - 0.1 < header_took < HEADER_TIMEOUT + 5.0 and answer == b""
    body_took, answer = await slow(b"POST /webhooks/twilio/sms/inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                                   b"Content-Type: application/x-www-form-urlencoded\r\n\r\n", b"a")
    assert BODY_TIMEOUT - 0.1 < body_took < BODY_TIMEOUT + 5.0
    assert answer.startswith(b"HTTP/1.1 408 ") and b"application/problem+json" in answer
    assert b"within 2 s" in answer and b"Connection: close" in answer
    print(f"slow headers cut after {header_took:.2f} s; slow body answered 408 after {body_took:.2f} s")

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /webhooks/twilio/sms/inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"a" * 1000)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    # Refused from its Content-Length, before the body: 413, not the slow-body 408.
    assert answer.startswith(b"HTTP/1.1 413 ") and b"limited to 65536 bytes" in answer


MALFORMED = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"Got more than 8190 bytes"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n", b"Too many headers"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", b"Got more than 4096 bytes"),
    (b"GARBAGE\r\n\r\n", b"Invalid method"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"Invalid header token"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 50, b"HTTPS traffic"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b""),
]


async def test_malformed_http_is_answered_problem_json_before_any_handler(server: Server) -> None:
    """What aiohttp's parser refuses (before any application code) is problem+json too, with
    no aiohttp version and one log line instead of a traceback."""
    for request_bytes, why in MALFORMED:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400 ") and b"application/problem+json" in head, answer
        assert b"Server: warnd\r\n" in head + b"\r\n" and b"aiohttp" not in answer and why in body, answer
        assert json.loads(body)["status"] == 400
    log = server.log.read_text()
    assert "Traceback" not in log and log.count("malformed http request") == len(MALFORMED)
