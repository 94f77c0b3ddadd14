"""The demo's other confirm paths: WeCom cards (收到 button, or the link with a 反馈 form)
and voice calls (press 1), played by the providers' local servers against warnd's real
webhooks. Who answers how is drawn once per official from a seeded generator."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp

from devtools.simulators import SimMessage
from devtools.simulators.official_link import answer_link
from devtools.simulators.twilio_api import TwilioApi
from devtools.simulators.wecom_api import WeComApi
from warnd.clock import Clock
from warnd.config import package_default


def demo_policy(workdir: Path) -> Path:
    """The shipped policy with WeCom next to SMS on every first send, and a voice call as the
    first escalation rung of the standard ladder (county and township officials)."""
    text = package_default("policy.toml").read_text(encoding="utf-8")
    text = text.replace('channels = ["sms"]', 'channels = ["sms", "voice", "wecom"]', 1)
    text = text.replace("\nroles = [", '\nchannels = ["sms", "wecom"]\nroles = [')
    rung = '{ action = "resend", wait_minutes = 5 }'
    assert rung in text, "warnd/defaults/policy.toml changed: update the demo policy"
    text = text.replace(rung, '{ action = "resend", wait_minutes = 5, channels = ["voice"] }', 1)
    path = workdir / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class ChannelOfficials:
    """Officials with a WeCom account: some tap 收到, some open the link and report 反馈,
    the rest answer by SMS. Everyone called by voice presses 1 (a few only after *), some
    never pick up."""

    wecom: WeComApi
    twilio: TwilioApi
    clock: Clock
    rng: random.Random
    link_users: set[str] = field(default_factory=set)
    feedback_sent: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def assign(self, userids: dict[str, str], phones: list[str], callback_url: str) -> set[str]:
        """Decide behaviours (`userids`: WeCom userid → phone). Returns the phones that do not
        answer by SMS: WeCom users, and the leaders who only pick up the phone (叫醒)."""
        self.wecom.callback_url = callback_url
        self.wecom.press_delay = 0.05  # real seconds: the tap itself, before the clock's own delays
        self.twilio.auto_calls = True
        voice_only: set[str] = set()
        for phone in phones:
            r = self.rng.random()
            if r < 0.1:
                self.twilio.no_answer_numbers.add(phone)
            else:
                self.twilio.call_scripts[phone] = ["*", "1"] if r < 0.25 else ["1"]
                if r > 0.8:
                    voice_only.add(phone)  # asleep: only the call's ring wakes them
        not_by_sms = set(voice_only)
        for uid, phone in userids.items():
            if phone in voice_only:
                continue
            r = self.rng.random()
            if r < 0.45:
                self.wecom.auto_press.add(uid)
            elif r < 0.75:
                self.link_users.add(uid)
            else:
                continue
            not_by_sms.add(phone)
        return not_by_sms

    async def watch_links(self) -> None:
        """Link users open the card's 反馈 link a few minutes after it arrives."""
        self._session = aiohttp.ClientSession()
        seen = 0
        while True:
            try:
                await self.wecom.wait_for_messages(seen + 1, timeout=3600)
            except TimeoutError:
                continue
            for msg in self.wecom.messages[seen:]:
                if msg.to in self.link_users:
                    task = asyncio.create_task(self._answer(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            seen = len(self.wecom.messages)

    async def _answer(self, msg: SimMessage) -> None:
        urls = [b.get("url") for b in msg.extra.get("card", {}).get("button_list", []) if b.get("url")]
        if not urls or self._session is None:
            return
        await self.clock.wait_until(self.clock.now() + timedelta(minutes=self.rng.uniform(1, 4)))
        action = self.rng.choice(["transferred", "gong", "door_knock"])
        ok = await answer_link(self._session, urls[0], actions=[action],
                               people_moved=self.rng.randint(3, 40) if action == "transferred" else 0,
                               note="已落实")
        self.feedback_sent += ok

    async def stop(self) -> None:
        if self._tasks:  # let answers already on their way arrive rather than cut them off
            await asyncio.wait(list(self._tasks), timeout=2)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
