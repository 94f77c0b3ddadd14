"""Twilio Programmable SMS under the channel contract (twilio SDK → the TwilioApi stand-in)."""

from __future__ import annotations

from channels.base import SendReceipt
from channels.sms_twilio import TwilioSms
from devtools.simulators import TwilioApi
from support.contract import Harness

SID, TOKEN, FROM = "AC" + "2" * 32, "contract-twilio-token", "+15005550006"


def forged_posts(h: Harness, urls: list[str], params: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Twilio webhooks signed wrongly: no signature, garbage, another account's key."""
    other = TwilioApi(SID, "someone-elses-token")
    return [(u, hdr) for u in urls for hdr in (
        {}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, {"X-Twilio-Signature": other.sign(u, params)})]


class TwilioSmsHarness(Harness):
    registry = ("sms", "twilio")
    answers = "reply"

    async def start(self) -> None:
        self.sim = TwilioApi(SID, TOKEN)
        await self.sim.start()
        self.channel = self.twilio = TwilioSms(account_sid=SID, auth_token=TOKEN, from_number=FROM,
                                               public_base_url=self.public, api_base_url=self.sim.base_url)
        await self.serve()

    def address(self, n: int) -> str:
        return f"+155512300{n:02d}"

    def fail_next_transiently(self) -> None:
        self.sim.fail_next(1, 503)

    async def report(self, receipt: SendReceipt, delivered: bool) -> None:
        status, _ = await self.sim.send_status(
            receipt.provider_id, "delivered" if delivered else "undelivered",
            url=self.twilio.status_callback_url, error_code=None if delivered else 30003)
        assert status in (200, 204)

    async def answer(self, receipt: SendReceipt, address: str) -> None:
        status, _ = await self.sim.send_inbound(self.twilio.inbound_url, address, "1 收到")
        assert status == 200

    async def forge(self) -> list[int]:
        params = {"MessageSid": "SM" + "a" * 32, "From": self.address(1), "Body": "1", "MessageStatus": "delivered"}
        out = []
        for url, headers in forged_posts(self, [self.twilio.inbound_url, self.twilio.status_callback_url], params):
            async with self.http.post(url, data=params, headers=headers) as r:
                out.append(r.status)
        return out
