"""Twilio voice calls under the channel contract: the TwilioApi stand-in places the call and
plays the callee (answers, presses keys, hangs up), posting Twilio's signed callbacks."""

from __future__ import annotations

from channels.base import SendReceipt
from channels.voice_twilio import GATHER_PATH, STATUS_PATH, TwilioVoice
from devtools.simulators import TwilioApi
from support.contract import Harness
from support.contract.twilio_sms import FROM, SID, TOKEN, forged_posts


class TwilioVoiceHarness(Harness):
    registry = ("voice", "twilio")
    answers = "action"

    async def start(self) -> None:
        self.sim = TwilioApi(SID, TOKEN)
        await self.sim.start()
        self.channel = TwilioVoice(account_sid=SID, auth_token=TOKEN, from_number=FROM,
                                   public_base_url=self.public, api_base_url=self.sim.base_url,
                                   gather_seconds=5, attempts=1)
        await self.serve()

    def address(self, n: int) -> str:
        return f"+8613900000{n:03d}"

    def fail_next_transiently(self) -> None:
        self.sim.fail_next(1, 503)

    def accepted(self) -> list[tuple[str, str]]:
        return [(c.to, c.body) for c in self.sim.calls]  # the TwiML that will be spoken

    async def report(self, receipt: SendReceipt, delivered: bool) -> None:
        if delivered:
            await self.sim.answer(receipt.provider_id, ["1"])
        else:
            await self.sim.end_call(receipt.provider_id, "busy")

    async def answer(self, receipt: SendReceipt, address: str) -> None:
        await self.sim.answer(receipt.provider_id, ["1"])

    async def forge(self) -> list[int]:
        params = {"CallSid": "CA" + "a" * 32, "Digits": "1", "CallStatus": "completed", "To": self.address(1)}
        urls = [self.public + GATHER_PATH + "?attempt=1", self.public + STATUS_PATH]
        out = []
        for url, headers in forged_posts(self, urls, params):
            async with self.http.post(url, data=params, headers=headers) as r:
                out.append(r.status)
        return out
