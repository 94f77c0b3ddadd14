"""A test double of the engine's InboundSink, shared by the channel tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from channels.base import DeliveryReport, InboundReply


class RecordingSink:
    """Test double of the engine's InboundSink: records what the channel hands over."""

    def __init__(self) -> None:
        self.replies: list[InboundReply] = []
        self.reports: list[DeliveryReport] = []
        self._cond = asyncio.Condition()

    async def on_reply(self, reply: InboundReply) -> None:
        async with self._cond:
            self.replies.append(reply)
            self._cond.notify_all()

    async def on_report(self, report: DeliveryReport) -> None:
        async with self._cond:
            self.reports.append(report)
            self._cond.notify_all()

    async def on_reports(self, reports: Sequence[DeliveryReport]) -> None:
        async with self._cond:
            self.reports.extend(reports)
            self._cond.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(predicate)
