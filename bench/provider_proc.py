"""The benchmark's SMS provider and simulated officials, in their own process.

    python bench/provider_proc.py        # prints one JSON line {base_url, secret_id, ...}, serves until stdin closes

The local Tencent Cloud SMS API server (devtools/simulators) plus a few control routes the
harness uses (this process's own clock stamps every accepted message; the harness runs on
the same machine, so wall times compare):

- GET  /bench/ping                 — the bare HTTP round trip baseline
- GET  /bench/wait?count=N&since=I — until N messages were accepted; first/last accept time
                                     of messages I.., requests seen, bodies when asked;
                                     with &prefix=P: until N of the messages I.. went to numbers
                                     starting with P (+86139… officials, +86137… the public),
                                     first/last of those
- POST /bench/replies              — {url, phones, text, concurrency}: the handsets answer
                                     through Tencent's reply callback; returns the seconds taken
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.simulators import SimMessage
from devtools.simulators.tencent_sms_api import TencentSmsApi


class BenchTencent(TencentSmsApi):
    def _app(self) -> web.Application:
        app = super()._app()
        app.router.add_get("/bench/ping", self._ping)
        app.router.add_get("/bench/wait", self._wait)
        app.router.add_post("/bench/replies", self._replies)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _wait(self, request: web.Request) -> web.Response:
        count = int(request.query.get("count", "0"))
        since = int(request.query.get("since", "0"))
        timeout = float(request.query.get("timeout", "600"))
        prefix = request.query.get("prefix")
        got: list[SimMessage] = []
        scanned = since

        def enough() -> bool:  # messages since `since` to numbers starting with `prefix`, scanned once each
            nonlocal scanned
            new = self.messages[scanned:]
            scanned += len(new)
            got.extend(m for m in new if m.to.startswith(prefix or ""))
            return len(got) >= count

        try:
            if prefix is None:
                await self.wait_for_messages(count, timeout=timeout)
            else:
                await self.wait_until(enough, timeout=timeout)
        except TimeoutError:
            pass
        if prefix is None:
            got = self.messages[since:]
        out: dict[str, Any] = {"count": len(self.messages), "matched": len(got), "requests": self.requests_seen,
                               "first": min(m.time for m in got).timestamp() if got else None,
                               "last": max(m.time for m in got).timestamp() if got else None}
        if request.query.get("times"):
            out["times"] = [m.time.timestamp() for m in got]
        if request.query.get("bodies"):
            out["bodies"] = [m.body for m in got]
        return web.json_response(out)

    async def _replies(self, request: web.Request) -> web.Response:
        body = await request.json()
        sem = asyncio.Semaphore(int(body.get("concurrency", 64)))
        statuses: dict[int, int] = {}

        async def one(phone: str) -> None:
            async with sem:
                status, _ = await self.send_reply(body["url"], phone, body.get("text", "收到"))
                statuses[status] = statuses.get(status, 0) + 1

        t = time.perf_counter()
        await asyncio.gather(*(one(p) for p in body["phones"]))
        return web.json_response({"seconds": time.perf_counter() - t, "statuses": statuses})


async def main() -> None:
    sim = BenchTencent()
    sim.callback_concurrency = 1000
    await sim.start()
    print(json.dumps({"base_url": sim.base_url, "secret_id": sim.secret_id, "secret_key": sim.secret_key,
                      "sdk_app_id": sim.sdk_app_id, "sign_name": sim.sign_name}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the harness closes stdin
    await sim.stop()


if __name__ == "__main__":
    asyncio.run(main())
