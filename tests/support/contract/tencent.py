"""Tencent Cloud SMS under the channel contract (tencentcloud SDK → the TencentSmsApi stand-in)."""

from __future__ import annotations

from channels.base import SendReceipt
from channels.sms_tencent import TencentSms
from devtools.simulators import TencentSmsApi
from support.contract import Harness

SECRET_ID, SECRET_KEY, APP_ID, SIGN = "AKIDcontract000000000000000000000000", "contract-key", "1400654321", "某县应急管理局"
CB_TOKEN = "cb-contract-7f3a9c1e5b"


class TencentHarness(Harness):
    registry = ("sms", "tencent")
    answers = "reply"

    async def start(self) -> None:
        self.sim = TencentSmsApi(SECRET_ID, SECRET_KEY, APP_ID, SIGN, auto_report=True)
        await self.sim.start()
        self.channel = self.tencent = TencentSms(
            secret_id=SECRET_ID, secret_key=SECRET_KEY, sdk_app_id=APP_ID, sign_name=SIGN, template_id="100001",
            callback_token=CB_TOKEN, endpoint=self.sim.base_url.removeprefix("http://"))
        self.urls = self.tencent.callback_urls(self.public)
        await self.serve()

    def address(self, n: int) -> str:
        return f"+86138000000{n:02d}"

    def fail_next_transiently(self) -> None:
        self.sim.fail_next(1, "InternalError.Timeout")

    async def report(self, receipt: SendReceipt, delivered: bool) -> None:
        [m] = [m for m in self.sim.messages if m.id == receipt.provider_id]
        status, _ = await self.sim.send_status_reports(self.urls["status"], [m], success=delivered)
        assert status == 200

    async def answer(self, receipt: SendReceipt, address: str) -> None:
        status, _ = await self.sim.send_reply(self.urls["reply"], address, "1 收到")
        assert status == 200

    async def forge(self) -> list[int]:
        out = []
        payload = {"extend": "", "mobile": "13800000001", "nationcode": "86", "sign": SIGN, "text": "1", "time": 1}
        for kind in ("reply", "status"):
            forged = self.urls[kind].replace(CB_TOKEN, "cb-0000000000000000")
            async with self.http.post(forged, json=[payload] if kind == "status" else payload) as r:
                out.append(r.status)
        return out
