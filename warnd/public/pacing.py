"""A channel paced to its provider's request rate for public traffic: every message waits
for a token of the provider's bucket (core/public_budget.TokenBucket, in real time: providers
count real seconds). Officials' traffic does not go through it and never waits for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime

from aiohttp import web

from channels.base import Channel, InboundSink, OutboundMessage, SendError, SendReceipt
from warnd.core.public_budget import TokenBucket


class PacedChannel:
    def __init__(self, inner: Channel, rate: float, burst: float | None = None):
        self.inner = inner
        self.bucket = TokenBucket.full(rate, burst, time.monotonic())
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for tokens (for benchmarks and tests)

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def max_batch(self) -> int:
        return self.inner.max_batch

    @property
    def rate_per_second(self) -> float | None:
        return self.bucket.rate

    @property
    def lookup(self) -> str:
        return self.inner.lookup

    @property
    def delivery_reports(self) -> bool:
        return self.inner.delivery_reports

    @property
    def send_timeout(self) -> float:
        return self.inner.send_timeout

    @property
    def lookup_after(self) -> float:
        return self.inner.lookup_after

    async def _pace(self, n: int) -> None:
        async with self._lock:
            wait, self.bucket = self.bucket.take(n, time.monotonic())
            if wait > 0:
                self.waited += wait
                await asyncio.sleep(wait)  # the provider's rate limit is in real time

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        await self._pace(1)
        return await self.inner.send(msg)

    async def send_many(self, msgs: Sequence[OutboundMessage], context: str) -> list[SendReceipt | SendError]:
        await self._pace(len(msgs))
        return await self.inner.send_many(msgs, context)

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        return await self.inner.find_sent(msg, since)

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        return []  # the inner channel's routes are mounted once, by the application

    async def close(self) -> None:
        return None  # the inner channel is closed by its owner
