"""WeCom (企业微信) application cards under the channel contract: the WeComApi stand-in takes
the card and plays the member tapping 收到 (an encrypted, signed callback)."""

from __future__ import annotations

from channels.base import SendReceipt
from channels.wecom import CALLBACK_PATH, WeComApp
from devtools.simulators.wecom_api import Callback, WeComApi
from support.contract import Harness, message


class WeComHarness(Harness):
    registry = ("wecom", "wecom")
    answers = "action"

    async def start(self) -> None:
        self.sim = WeComApi()
        await self.sim.start()
        s = self.sim
        self.channel = WeComApp(corp_id=s.corp_id, corp_secret=s.corp_secret, agent_id=s.agent_id, token=s.token,
                                encoding_aes_key=s.encoding_aes_key, api_base_url=s.base_url)
        await self.serve()

    def address(self, n: int) -> str:
        return f"official{n:02d}"

    def fail_next_transiently(self) -> None:
        self.sim.fail_next(1, -1)  # 系统繁忙

    async def answer(self, receipt: SendReceipt, address: str) -> None:
        [m] = [m for m in self.sim.messages if m.context == receipt.provider_id and m.to == address]
        cb = await self.sim.press_button(m, self.public + CALLBACK_PATH)
        assert cb.status == 200

    async def forge(self) -> list[int]:
        """A tap signed with another application's key, and a genuine one replayed."""
        other = WeComApi(corp_id=self.sim.corp_id)  # same corp, a different Token/EncodingAESKey
        out = []
        await self.channel.send(message(self.address(9), "forge-probe"))
        [m] = [m for m in self.sim.messages if m.to == self.address(9)]
        forged = await other.press_button(m, self.public + CALLBACK_PATH)
        out.append(forged.status)
        genuine = await self.sim.press_button(m, self.public + CALLBACK_PATH)
        self.sink.actions.clear()  # the genuine tap counts; its replay must not
        replay = await self.sim.post_callback(Callback(url=genuine.url, body=genuine.body))
        out.append(replay.status)
        await other.stop()
        return out
