"""A hostile HTTP client, run as its own process so that its work does not slow the test's
normal client: it keeps N slow connections going (half drip their headers, half their
bodies, each reconnecting as soon as the server drops it) and floods the webhooks with
unsigned posts, 5 MB ones among them. Prints a JSON tally when done.

    python tests/support/abuser.py --port P --slow 2000 --flooders 8 --seconds 10 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

WEBHOOK = "/webhooks/twilio/sms/inbound"


@dataclass
class Tally:
    opened: int = 0
    lifetimes: list[float] = field(default_factory=list)  # until the server dropped them
    answers: Counter[str] = field(default_factory=Counter)
    flood: Counter[str] = field(default_factory=Counter)


async def slow_connection(port: int, source: str, body: bool, drip: float, pause: float,
                          start: float, stop: asyncio.Event, tally: Tally) -> None:
    """Like slowloris: hold a connection by dripping a header line (or, headers sent, a body
    byte) every `drip` seconds; once dropped, open it again after about `pause`. Connections
    are opened one after another over the first `start` seconds, as such tools do."""
    await asyncio.sleep(start)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(pause)
            continue
        tally.opened += 1
        t0 = time.monotonic()
        if body:
            writer.write(f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: forged\r\n"
                         "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n".encode())
        else:
            writer.write(f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\n".encode())
        answer = asyncio.create_task(reader.read())  # everything until the server closes
        with contextlib.suppress(OSError):
            while not stop.is_set() and not answer.done():
                await writer.drain()
                await asyncio.sleep(drip)
                writer.write(b"a" if body else b"X-Pad: 1\r\n")
        if not answer.done():
            answer.cancel()
        first = (answer.result() if answer.done() and not answer.cancelled() and answer.exception() is None
                 else b"").split(b"\r\n", 1)[0]
        if not stop.is_set():
            tally.lifetimes.append(time.monotonic() - t0)
            tally.answers[first.decode(errors="replace") or "closed"] += 1
        writer.close()
        await asyncio.sleep(pause * random.uniform(0.5, 1.5))


async def flood(base: str, source: str, stop: asyncio.Event, tally: Tally, i: int) -> None:
    big = b"a" * (5 * 1024 * 1024)

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"b" * 65536

    connector = aiohttp.TCPConnector(force_close=True, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        n = 0
        while not stop.is_set():
            n += 1
            kind = ("5MB", "chunked", "forged")[(n + i) % 3]
            data: object = big if kind == "5MB" else chunked() if kind == "chunked" else {"Body": "1", "From": "+86"}
            try:
                async with http.post(base + WEBHOOK, data=data, headers={"X-Twilio-Signature": "forged"}) as r:
                    tally.flood[f"{kind} {r.status}"] += 1
            except aiohttp.ClientError:
                tally.flood[f"{kind} dropped"] += 1


def source(i: int, clients: int) -> str:
    return f"127.0.0.{10 + i % clients}"  # each its own client address (all loopback on Linux)


async def main(port: int, slow: int, flooders: int, seconds: float, drip: float, pause: float,
               clients: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, slow + flooders + 500), hard), hard))
    stop, tally = asyncio.Event(), Tally()
    tasks = [asyncio.create_task(slow_connection(port, source(i, clients), i % 2 == 1, drip, pause,
                                                 i / slow, stop, tally)) for i in range(slow)]
    tasks += [asyncio.create_task(flood(f"http://127.0.0.1:{port}", source(i, clients), stop, tally, i))
              for i in range(flooders)]
    print(json.dumps({"started": True}), flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    life = sorted(tally.lifetimes) or [0.0]
    print(json.dumps({"opened": tally.opened, "dropped": len(tally.lifetimes),
                      "lifetime_median": statistics.median(life), "lifetime_max": life[-1],
                      "answers": tally.answers, "flood": tally.flood}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--slow", type=int, default=2000)
    p.add_argument("--flooders", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--drip", type=float, default=0.5, help="seconds between dripped bytes")
    p.add_argument("--pause", type=float, default=1.0, help="seconds before reopening a dropped connection")
    p.add_argument("--clients", type=int, default=8, help="source addresses 127.0.0.10, .11, ...")
    a = p.parse_args()
    asyncio.run(main(a.port, a.slow, a.flooders, a.seconds, a.drip, a.pause, a.clients))
