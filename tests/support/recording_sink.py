"""A test double of the engine's InboundSink (and ActionSink), shared by the channel tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from channels.base import DeliveryReport, InboundAction, InboundReply


class RecordingSink:
    """Records what a channel hands over: replies, delivery reports and actions (a key pressed,
    a button tapped). Actions are answered "confirmed"; `texts` answers message_text."""

    def __init__(self) -> None:
        self.replies: list[InboundReply] = []
        self.reports: list[DeliveryReport] = []
        self.actions: list[InboundAction] = []
        self.texts: dict[str, str] = {}  # provider_id -> the text a voice call repeats
        self._cond = asyncio.Condition()

    async def _add(self, into: list[object], item: object) -> None:
        async with self._cond:
            into.append(item)
            self._cond.notify_all()

    async def on_reply(self, reply: InboundReply) -> None:
        await self._add(self.replies, reply)  # type: ignore[arg-type]

    async def on_report(self, report: DeliveryReport) -> None:
        await self._add(self.reports, report)  # type: ignore[arg-type]

    async def on_action(self, action: InboundAction) -> str:
        await self._add(self.actions, action)  # type: ignore[arg-type]
        return "confirmed"

    async def message_text(self, provider: str, provider_id: str) -> str | None:
        return self.texts.get(provider_id)

    def empty(self) -> bool:
        return not (self.replies or self.reports or self.actions)

    async def on_reports(self, reports: Sequence[DeliveryReport]) -> None:
        async with self._cond:
            self.reports.extend(reports)
            self._cond.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(predicate)
