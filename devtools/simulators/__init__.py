"""Local servers that speak SMS providers' real HTTP APIs.

Tests and `warnd-dev demo` point the providers' official SDKs at these instead of the
internet. They play both sides of the provider: they accept API calls (verifying the
credentials the real service would verify) and they call our webhooks the way the
provider would (signed like Twilio, or with Tencent's JSON bodies).

Each simulator records accepted messages as `SimMessage`s; `wait_for_messages` waits on an
asyncio.Condition so tests never poll or sleep.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web


@dataclass
class SimMessage:
    to: str  # E.164
    body: str
    id: str  # Twilio SID / Tencent SerialNo
    context: str | None  # idempotency context the caller sent (Tencent SessionContext)
    time: datetime  # accepted at (UTC)
    status: str = "queued"
    extra: dict[str, Any] = field(default_factory=dict)


class SimulatorBase:
    """Lifecycle, message log, fault queue and an outgoing HTTP session for callbacks."""

    def __init__(self) -> None:
        # Callbacks (replies, status reports) in flight at once, as a provider's push fleet.
        self.callback_concurrency = 64
        self.messages: list[SimMessage] = []
        self.fail_numbers: set[str] = set()
        self.requests_seen = 0  # every API call, including failed ones
        self._faults: deque[Any] = deque()
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.base_url = ""
        self.port = 0

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])  # port=0: the OS picked one
        self.base_url = f"http://{host}:{self.port}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorBase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, count: int, status_or_code: Any) -> None:
        """The next `count` API calls fail with this HTTP status or provider error code."""
        self._faults.extend([status_or_code] * count)

    def _take_fault(self) -> Any | None:
        return self._faults.popleft() if self._faults else None

    async def _record(self, msgs: list[SimMessage]) -> None:
        async with self._cond:
            self.messages.extend(msgs)
            self._cond.notify_all()

    async def _changed(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SimMessage]:  # noqa: ASYNC109
        """Wait until at least `n` messages were accepted; raises TimeoutError."""
        async with asyncio.timeout(timeout):
            async with self._cond:
                await self._cond.wait_for(lambda: len(self.messages) >= n)
                return list(self.messages)

    async def wait_until(self, predicate: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until predicate() is true; re-checked whenever the simulator's state changes."""
        async with asyncio.timeout(timeout):
            async with self._cond:
                await self._cond.wait_for(predicate)

    def _http(self) -> ClientSession:
        if self._session is None:
            self._session = ClientSession(
                connector=TCPConnector(limit=self.callback_concurrency), timeout=ClientTimeout(total=30)
            )
        return self._session

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


from devtools.simulators.tencent_sms_api import TencentSmsApi  # noqa: E402
from devtools.simulators.twilio_api import TwilioApi  # noqa: E402

__all__ = ["SimMessage", "SimulatorBase", "TencentSmsApi", "TwilioApi"]
