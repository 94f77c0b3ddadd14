"""Simulated officials: they read their SMS on the provider simulator and answer through
the provider's real uplink callback, after human-looking delays on the demo clock."""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from datetime import timedelta

from devtools.simulators import SimMessage
from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.clock import Clock

CODE = re.compile(r"编号([0-9A-Z]+)")


@dataclass
class Behaviour:
    prompt: float = 0.72  # confirm the first message within minutes
    slow: float = 0.12  # confirm late, usually after the resend
    after_resend: float = 0.09  # only the second message wakes them
    # the rest never answer: deputies and superiors have to step in
    deputy_answers: float = 0.65
    garbled_first: float = 0.03  # answer "好" first, get the instruction, then "收到"


@dataclass
class Officials:
    sim: TencentSmsApi
    clock: Clock
    reply_url: str
    rng: random.Random
    behaviour: Behaviour = field(default_factory=Behaviour)
    skip: set[str] = field(default_factory=set)  # phones whose owner answers on another channel
    replies: int = 0
    _profile: dict[str, str] = field(default_factory=dict)
    _answered: set[tuple[str, str]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _kind(self, phone: str) -> str:
        if phone not in self._profile:
            b, r = self.behaviour, self.rng.random()
            self._profile[phone] = ("prompt" if r < b.prompt else "slow" if r < b.prompt + b.slow
                                    else "resend" if r < b.prompt + b.slow + b.after_resend else "silent")
        return self._profile[phone]

    async def watch(self) -> None:
        seen = 0
        while True:
            try:
                await self.sim.wait_for_messages(seen + 1, timeout=3600)
            except TimeoutError:
                continue
            for msg in self.sim.messages[seen:]:
                self._on_message(msg)
            seen = len(self.sim.messages)

    def _on_message(self, msg: SimMessage) -> None:
        if "回复1" not in msg.body or msg.to in self.skip:
            return  # notices and instructions, or an official who answers on WeCom
        m = CODE.search(msg.body)
        code, phone, kind = (m.group(1) if m else ""), msg.to, self._kind(msg.to)
        if (phone, code or msg.body) in self._answered:
            return
        minutes: float | None
        if "替补叫应" in msg.body or "上级督办" in msg.body:
            minutes = self.rng.uniform(1, 4) if self.rng.random() < self.behaviour.deputy_answers else None
        elif "再次提醒" in msg.body:
            minutes = {"slow": self.rng.uniform(1, 4), "resend": self.rng.uniform(0.5, 3)}.get(kind)
        else:
            minutes = {"prompt": self.rng.lognormvariate(0.8, 0.6), "slow": self.rng.uniform(7, 20)}.get(kind)
        if minutes is None:
            return
        self._answered.add((phone, code or msg.body))
        garbled = self.rng.random() < self.behaviour.garbled_first
        task = asyncio.create_task(self._reply(phone, code, minutes, garbled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, phone: str, code: str, minutes: float, garbled: bool) -> None:
        await self.clock.wait_until(self.clock.now() + timedelta(minutes=minutes))
        if garbled:
            await self.sim.send_reply(self.reply_url, phone, "好")
        text = self.rng.choice(["收到", "1", "收到！", "确认"] + ([f"收到 {code}"] if code else []))
        status, _ = await self.sim.send_reply(self.reply_url, phone, text)
        if status == 200:
            self.replies += 1

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
