"""TwilioSms against the local Twilio API simulator, through the real twilio SDK."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from channels.base import (
    InDoubtSendError,
    OutboundMessage,
    PermanentSendError,
    TransientSendError,
)
from channels.sms_twilio import EMPTY_TWIML, TwilioSms
from devtools.simulators import TwilioApi
from support.recording_sink import RecordingSink

SID = "AC" + "1" * 32
TOKEN = "twilio-test-token"
FROM = "+15005550006"
LONG_BODY = (
    "【某县防指】暴雨红色预警：预计未来3小时内，城关镇、龙潭乡、石门乡将出现50毫米以上强降雨，"
    "局地可达100毫米，山洪、地质灾害风险极高。请各村（社区）立即组织危险区域群众转移，"
    "鸣锣吹哨、敲门入户，确保不漏一户、不落一人；转移情况于1小时内报县防指。收到请回复1。"
)


@dataclass
class Env:
    sim: TwilioApi
    channel: TwilioSms
    sink: RecordingSink
    http: aiohttp.ClientSession


def _msg(body: str = LONG_BODY, to: str = "+15551230001", key: str = "k1") -> OutboundMessage:
    return OutboundMessage(idempotency_key=key, to=to, body=body, created_at=datetime.now(UTC))


async def _env(sim: TwilioApi) -> AsyncIterator[Env]:
    await sim.start()
    # Bind our webhook port first: the channel must know its public URL before routing.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    channel = TwilioSms(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        public_base_url=public,
        api_base_url=sim.base_url,
    )
    sink = RecordingSink()
    app = web.Application()
    app.add_routes(channel.webhook_routes(sink))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    http = aiohttp.ClientSession()
    try:
        yield Env(sim, channel, sink, http)
    finally:
        await http.close()
        await channel.close()
        await runner.cleanup()
        await sim.stop()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for e in _env(TwilioApi(SID, TOKEN)):
        yield e


@pytest.fixture
async def env_auto() -> AsyncIterator[Env]:
    async for e in _env(
        TwilioApi(SID, TOKEN, auto_status=True, undeliverable_numbers={"+15557770000"})
    ):
        yield e


async def test_send_reaches_twilio_with_chinese_text_byte_identical(env: Env) -> None:
    receipt = await env.channel.send(_msg())
    [got] = await env.sim.wait_for_messages(1)
    assert got.body.encode("utf-8") == LONG_BODY.encode("utf-8")
    assert got.to == "+15551230001"
    assert got.extra["from"] == FROM
    assert (
        got.extra["status_callback"] == env.channel.public_base_url + "/webhooks/twilio/sms/status"
    )
    assert receipt.provider == "twilio" and receipt.provider_id == got.id
    assert got.id.startswith("SM") and len(got.id) == 34


async def test_429_is_transient_with_retry_after_then_success(env: Env) -> None:
    env.sim.fail_next(1, 429, retry_after=7)
    with pytest.raises(TransientSendError) as err:
        await env.channel.send(_msg())
    assert err.value.retry_after == 7
    assert env.sim.messages == []
    receipt = await env.channel.send(_msg())
    assert [m.id for m in env.sim.messages] == [receipt.provider_id]


async def test_5xx_is_in_doubt(env: Env) -> None:
    env.sim.fail_next(1, 503)  # the request was written: Twilio may have taken it
    with pytest.raises(InDoubtSendError) as err:
        await env.channel.send(_msg())
    assert err.value.retry_after is None


async def test_invalid_number_is_permanent(env: Env) -> None:
    env.sim.fail_numbers.add("+15550000000")
    with pytest.raises(PermanentSendError, match="21211"):
        await env.channel.send(_msg(to="+15550000000"))
    assert env.sim.messages == []


async def test_wrong_credentials_are_permanent(env: Env) -> None:
    channel = TwilioSms(
        account_sid=SID,
        auth_token="wrong",
        from_number=FROM,
        public_base_url="http://127.0.0.1:1",
        api_base_url=env.sim.base_url,
    )
    try:
        with pytest.raises(PermanentSendError, match="401"):
            await channel.send(_msg())
    finally:
        await channel.close()


async def test_unreachable_api_is_transient_and_not_in_doubt() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = TwilioSms(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        public_base_url="http://127.0.0.1:1",
        api_base_url=f"http://127.0.0.1:{port}",
    )
    try:
        with pytest.raises(TransientSendError, match="cannot connect") as err:
            await channel.send(_msg())
        assert not isinstance(err.value, InDoubtSendError)  # nothing can have been sent
    finally:
        await channel.close()


async def test_find_sent_finds_accepted_message_and_not_unknown_ones(env: Env) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(3):  # other traffic to the same number
        await env.channel.send(_msg(body=f"其他通知{i}"))
    receipt = await env.channel.send(_msg())
    found = await env.channel.find_sent(_msg(), since)
    assert found == receipt
    assert await env.channel.find_sent(_msg(body=LONG_BODY + "（更新）"), since) is None
    assert await env.channel.find_sent(_msg(to="+15559999999"), since) is None


async def test_find_sent_pages_through_results(env: Env) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    first = await env.channel.send(_msg(body="最早的一条"))
    await asyncio.gather(*(env.channel.send(_msg(body=f"后续{i}")) for i in range(150)))
    assert await env.channel.find_sent(_msg(body="最早的一条"), since) == first


async def test_status_callbacks_reach_sink_signed(env_auto: Env) -> None:
    env = env_auto
    receipt = await env.channel.send(_msg())
    await env.sink.wait(lambda: any(r.final for r in env.sink.reports))
    states = [(r.dedupe_key.split(":")[1], r.delivered, r.final) for r in env.sink.reports]
    assert states == [("queued", False, False), ("sent", False, False), ("delivered", True, True)]
    assert {r.provider_id for r in env.sink.reports} == {receipt.provider_id}


async def test_undelivered_is_final_failure(env_auto: Env) -> None:
    env = env_auto
    await env.channel.send(_msg(to="+15557770000"))
    await env.sink.wait(lambda: any(r.final for r in env.sink.reports))
    final = env.sink.reports[-1]
    assert (final.delivered, final.final) == (False, True)
    assert final.error is not None and "30003" in final.error


async def test_inbound_reply_with_valid_signature(env: Env) -> None:
    status, body = await env.sim.send_inbound(
        env.channel.inbound_url, "+15551230001", "1 收到，已转移"
    )
    assert status == 200
    assert body == EMPTY_TWIML
    [reply] = env.sink.replies
    assert reply.from_address == "+15551230001"
    assert reply.text == "1 收到，已转移"
    assert reply.dedupe_key.startswith("SM")


async def test_forged_or_missing_signature_is_refused(env: Env) -> None:
    url = env.channel.inbound_url
    params = {"MessageSid": "SM" + "a" * 32, "From": "+15551230001", "Body": "1"}
    cases = {
        "missing": {},
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        # Signed by someone holding a different token.
        "other key": {"X-Twilio-Signature": TwilioApi(SID, "other-token").sign(url, params)},
        # A genuine signature for a different URL (replayed against this endpoint).
        "other url": {"X-Twilio-Signature": env.sim.sign(env.channel.status_callback_url, params)},
        # A genuine signature, but the body was changed in flight.
        "tampered": {"X-Twilio-Signature": env.sim.sign(url, {**params, "Body": "2"})},
    }
    for name, headers in cases.items():
        async with env.http.post(url, data=params, headers=headers) as resp:
            assert resp.status == 403, name
    status_params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"}
    async with env.http.post(env.channel.status_callback_url, data=status_params) as resp:
        assert resp.status == 403
    assert env.sink.replies == [] and env.sink.reports == []


async def test_signature_covers_query_string(env: Env) -> None:
    url = env.channel.status_callback_url + "?tenant=county1"
    params = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "sent"}
    status, _ = await env.sim.post_signed(url, params)
    assert status == 204
    headers = {"X-Twilio-Signature": env.sim.sign(env.channel.status_callback_url, params)}
    async with env.http.post(url, data=params, headers=headers) as resp:
        assert resp.status == 403  # signed without the query: not what Twilio called
    assert len(env.sink.reports) == 1


async def test_a_thousand_concurrent_sends_are_each_accepted_once(env: Env) -> None:
    # How fast: bench/w1.py (raw_sdk_single), never a timed test.
    n = 1000
    receipts = await asyncio.gather(
        *(env.channel.send(_msg(to=f"+1555{i:07d}", key=str(i))) for i in range(n))
    )
    await env.sim.wait_for_messages(n)
    assert len({r.provider_id for r in receipts}) == n
