"""The channel contract's harnesses: each starts one channel against its provider's local
stand-in (devtools/simulators, real SDKs on the wire) with its webhooks served on a real
port, and plays the provider's side — a report, a reply or key press, a fault — the same
way for every channel, so tests/integration/test_channel_contract.py is written once.

A new channel adds one harness module here and one line in HARNESSES."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import ClassVar

from aiohttp import ClientSession, web

from channels.base import Channel, OutboundMessage, SendReceipt
from devtools.simulators import SimulatorBase
from support.recording_sink import RecordingSink

BODY = ("【某县防指】暴雨红色预警：预计未来3小时内，城关镇、龙潭乡将出现50毫米以上强降雨，"
        "山洪风险极高。请立即组织危险区域群众转移，鸣锣吹哨、敲门入户。收到请回复1。")


def message(to: str, key: str, body: str = BODY) -> OutboundMessage:
    return OutboundMessage(idempotency_key=key, to=to, body=body, created_at=datetime.now(UTC))


class Harness:
    """One channel under the contract. Subclasses say which registry entry they exercise and
    play the provider; the base serves the channel's webhooks on a real port."""

    registry: ClassVar[tuple[str, str]]  # (kind, provider) in channels.registry.REGISTRY
    answers: ClassVar[str]  # how a recipient confirms: "reply" (an SMS) or "action" (key, button)

    def __init__(self) -> None:
        self.sink = RecordingSink()
        self.http = ClientSession()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.public = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._runner: web.AppRunner | None = None
        self.channel: Channel
        self.sim: SimulatorBase  # the provider's stand-in, started by start()

    async def start(self) -> None:
        """Start the provider's stand-in, build the channel, then serve its webhooks (serve())."""
        raise NotImplementedError

    async def stop(self) -> None:
        await self.sim.stop()

    async def serve(self) -> None:
        app = web.Application()
        app.add_routes(self.channel.webhook_routes(self.sink))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        await self.http.close()
        await self.channel.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._sock.close()

    # -- what each provider plays --------------------------------------------------------

    def address(self, n: int) -> str:
        """A recipient the provider accepts (n = 1, 2, ...)."""
        raise NotImplementedError

    def refuse(self, address: str) -> None:
        """The provider will refuse this address for good (invalid number, unknown user)."""
        self.sim.fail_numbers.add(address)

    def fail_next_transiently(self) -> None:
        """The provider's next answer is a fault worth retrying (busy, 5xx, rate limit)."""
        raise NotImplementedError

    def accepted(self) -> list[tuple[str, str]]:
        """What the provider accepted: (address, the text it will show or speak)."""
        return [(m.to, m.body) for m in self.sim.messages]

    async def report(self, receipt: SendReceipt, delivered: bool) -> None:
        """The provider reports a final outcome for this send (channels with delivery_reports)."""
        raise NotImplementedError

    async def answer(self, receipt: SendReceipt, address: str) -> None:
        """The recipient confirms: replies 1, presses 1, taps 收到."""
        raise NotImplementedError

    async def forge(self) -> list[int]:
        """Post forged callbacks to every webhook the channel serves; their HTTP statuses."""
        raise NotImplementedError


def harness_classes() -> dict[str, type[Harness]]:
    """Every channel under the contract, by a short name for test ids."""
    from support.contract import tencent, twilio_sms, twilio_voice, wecom

    return {cls.__name__.removesuffix("Harness"): cls for cls in (
        tencent.TencentHarness, twilio_sms.TwilioSmsHarness, twilio_voice.TwilioVoiceHarness, wecom.WeComHarness)}


@asynccontextmanager
async def running(cls: type[Harness]) -> AsyncIterator[Harness]:
    h = cls()
    await h.start()
    try:
        yield h
    finally:
        await h.close()
        await h.stop()
