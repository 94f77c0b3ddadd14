"""TencentSms against the local Tencent Cloud SMS simulator, through the real tencentcloud SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from channels.base import (
    InDoubtSendError,
    OutboundMessage,
    PermanentSendError,
    TransientSendError,
    error_reason,
)
from channels.sms_tencent import TencentSms
from devtools.simulators import TencentSmsApi
from devtools.simulators.tencent_sms_api import tc3_signature
from support.recording_sink import RecordingSink

SECRET_ID = "AKIDtest0000000000000000000000000000"
SECRET_KEY = "tencent-test-secret-key"
APP_ID = "1400123456"
SIGN = "某县应急管理局"
TEMPLATE = "100001"
CB_TOKEN = "cb-3f9c2e7a1d5b4c8e9f0a"
LONG_BODY = (
    "暴雨红色预警：预计未来3小时内，城关镇、龙潭乡、石门乡将出现50毫米以上强降雨，"
    "局地可达100毫米，山洪、地质灾害风险极高。请各村（社区）立即组织危险区域群众转移，"
    "鸣锣吹哨、敲门入户，确保不漏一户、不落一人；转移情况于1小时内报县防指。收到请回复1。"
)


@dataclass
class Env:
    sim: TencentSmsApi
    channel: TencentSms
    sink: RecordingSink
    http: aiohttp.ClientSession
    urls: dict[str, str]


def _msg(
    body: str = LONG_BODY, to: str = "+8613800000001", key: str = "delivery-1"
) -> OutboundMessage:
    return OutboundMessage(idempotency_key=key, to=to, body=body, created_at=datetime.now(UTC))


def _channel(endpoint: str, secret_key: str = SECRET_KEY) -> TencentSms:
    return TencentSms(
        secret_id=SECRET_ID,
        secret_key=secret_key,
        sdk_app_id=APP_ID,
        sign_name=SIGN,
        template_id=TEMPLATE,
        callback_token=CB_TOKEN,
        endpoint=endpoint,
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sim = TencentSmsApi(
        SECRET_ID, SECRET_KEY, APP_ID, SIGN, undeliverable_numbers={"+8613900000009"}
    )
    await sim.start()
    channel = _channel(sim.base_url.removeprefix("http://"))
    urls = channel.callback_urls(public)
    sink = RecordingSink()
    app = web.Application()
    app.add_routes(channel.webhook_routes(sink))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    http = aiohttp.ClientSession()
    try:
        yield Env(sim, channel, sink, http, urls)
    finally:
        await http.close()
        await channel.close()
        await runner.cleanup()
        await sim.stop()


async def test_send_round_trip_keeps_chinese_text_byte_identical(env: Env) -> None:
    receipt = await env.channel.send(_msg())
    [got] = await env.sim.wait_for_messages(1)
    assert got.body.encode("utf-8") == LONG_BODY.encode("utf-8")
    assert got.to == "+8613800000001"
    assert got.context == "delivery-1"  # SessionContext carries the idempotency key
    assert receipt.provider == "tencent" and receipt.provider_id == got.id
    # 【签名】+ 正文 over 70 characters is billed per 67.
    assert got.extra["fee"] == -(-len(f"【{SIGN}】{LONG_BODY}") // 67)


async def test_request_rate_limit_is_transient_then_success(env: Env) -> None:
    env.sim.fail_next(1, "RequestLimitExceeded")
    with pytest.raises(TransientSendError, match="RequestLimitExceeded") as err:
        await env.channel.send(_msg())
    assert err.value.retry_after == 1.0
    assert error_reason(err.value) == "rate_limited"
    assert env.sim.messages == []
    receipt = await env.channel.send(_msg())
    assert [m.id for m in env.sim.messages] == [receipt.provider_id]


async def test_per_number_frequency_limit_is_transient_with_retry_after(env: Env) -> None:
    env.sim.fail_next(1, "LimitExceeded.PhoneNumberThirtySecondLimit")
    with pytest.raises(TransientSendError) as err:
        await env.channel.send(_msg())
    assert err.value.retry_after == 30.0
    assert error_reason(err.value) == "rate_limited"


@pytest.mark.parametrize("fault", ["InternalError.Timeout", 502])
async def test_internal_and_gateway_errors_are_in_doubt(env: Env, fault: object) -> None:
    env.sim.fail_next(1, fault)
    with pytest.raises(InDoubtSendError) as err:
        await env.channel.send(_msg())
    assert error_reason(err.value) == "in_doubt"


async def test_an_answer_after_the_timeout_is_in_doubt_and_the_lookup_finds_it(env: Env) -> None:
    channel = TencentSms(secret_id=SECRET_ID, secret_key=SECRET_KEY, sdk_app_id=APP_ID, sign_name=SIGN,
                         template_id=TEMPLATE, callback_token=CB_TOKEN,
                         endpoint=env.sim.base_url.removeprefix("http://"), timeout=1)
    try:
        assert channel.send_timeout == 2.0
        env.sim.answer_late_next(1)
        with pytest.raises(InDoubtSendError, match="ClientNetworkError"):
            await channel.send(_msg())
        env.sim.release_late()
        [accepted] = env.sim.messages
        found = await channel.find_sent(_msg(), since=datetime.now(UTC) - timedelta(minutes=1))
        assert found is not None and found.provider_id == accepted.id
    finally:
        await channel.close()


async def test_a_refused_connection_is_transient_not_in_doubt(env: Env) -> None:
    await env.sim.outage_start("refuse")
    with pytest.raises(TransientSendError) as err:
        await env.channel.send(_msg())
    assert not isinstance(err.value, InDoubtSendError)
    assert error_reason(err.value) == "unreachable"
    await env.sim.outage_stop()
    await env.channel.send(_msg())
    assert len(env.sim.messages) == 1


async def test_simulator_logs_every_accepted_text_before_answering(env: Env, tmp_path: Path) -> None:
    env.sim.log_path = tmp_path / "accepted.jsonl"
    env.sim.accept_then_fail_next(1, 500)
    with pytest.raises(InDoubtSendError):
        await env.channel.send(_msg())
    [line] = env.sim.log_lines()
    assert (line["to"], line["text"], line["context"]) == ("+8613800000001", LONG_BODY, "delivery-1")
    await env.sim.outage_start("503")
    with pytest.raises(InDoubtSendError):
        await env.channel.send(_msg(key="delivery-2"))
    await env.sim.outage_stop()
    assert len(env.sim.log_lines()) == 1 and env.sim.refused_in_outage == 1


async def test_invalid_number_is_permanent_with_code(env: Env) -> None:
    env.sim.fail_numbers.add("+8613800000002")
    with pytest.raises(PermanentSendError, match=r"InvalidParameterValue\.IncorrectPhoneNumber") as err:
        await env.channel.send(_msg(to="+8613800000002"))
    assert error_reason(err.value) == "refused"
    assert env.sim.messages == []


async def test_bad_secret_fails_the_simulators_tc3_check(env: Env) -> None:
    channel = _channel(env.sim.base_url.removeprefix("http://"), secret_key="not-the-key")
    try:
        with pytest.raises(PermanentSendError, match=r"AuthFailure\.SignatureFailure"):
            await channel.send(_msg())
    finally:
        await channel.close()
    assert env.sim.messages == []


async def test_simulator_rejects_a_signed_request_whose_body_changed(env: Env) -> None:
    host = env.sim.base_url.removeprefix("http://")
    signed = json.dumps({"PhoneNumberSet": ["+8613800000001"], "SmsSdkAppId": APP_ID}).encode()
    tampered = signed.replace(b"0001", b"0002")
    ts = int(time.time())
    day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
    sig = tc3_signature(
        SECRET_KEY, content_type="application/json", host=host, payload=signed, timestamp=ts
    )
    headers = {
        "Content-Type": "application/json",
        "X-TC-Action": "PullSmsSendStatusByPhoneNumber",
        "X-TC-Timestamp": str(ts),
        "X-TC-Version": "2021-01-11",
        "Authorization": f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{day}/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}",
    }
    codes = []
    for payload in (signed, tampered):
        async with env.http.post(env.sim.base_url + "/", data=payload, headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            codes.append((await resp.json()).get("Response", {}).get("Error", {}).get("Code"))
    # The genuine request passes authentication (then fails validation: no Limit given).
    assert codes == ["InvalidParameterValue.LimitVerifyFail", "AuthFailure.SignatureFailure"]


async def test_unapproved_long_variable_is_permanent(env: Env) -> None:
    env.sim.max_param_chars = 6  # Tencent's standard cap, before the account has it lifted
    with pytest.raises(PermanentSendError, match="TemplateParameterLengthLimit"):
        await env.channel.send(_msg())


async def test_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = _channel(f"127.0.0.1:{port}")
    try:
        with pytest.raises(TransientSendError, match="ClientNetworkError") as err:
            await channel.send(_msg())
        assert error_reason(err.value) == "unreachable"
    finally:
        await channel.close()


async def test_find_sent_matches_session_context(env: Env) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    await env.channel.send(_msg(key="other-delivery"))
    receipt = await env.channel.send(_msg(key="delivery-7"))
    assert await env.channel.find_sent(_msg(key="delivery-7"), since) == receipt
    assert await env.channel.find_sent(_msg(key="never-sent"), since) is None
    assert await env.channel.find_sent(_msg(key="delivery-7", to="+8613800000099"), since) is None


async def test_reply_callback_reaches_sink(env: Env) -> None:
    status, body = await env.sim.send_reply(
        env.urls["reply"], "+8613800000001", "1 收到，已组织转移"
    )
    assert status == 200 and json.loads(body) == {"result": 0, "errmsg": "OK"}
    [reply] = env.sink.replies
    assert reply.provider == "tencent"
    assert reply.from_address == "+8613800000001"
    assert reply.text == "1 收到，已组织转移"
    # Tencent re-delivering the same reply yields the same dedupe key; a new reply does not.
    await env.sim.send_reply(env.urls["reply"], "13800000001", "1 收到，已组织转移", time_=0)
    await env.sim.send_reply(env.urls["reply"], "13800000001", "1 收到，已组织转移", time_=0)
    assert env.sink.replies[1].dedupe_key == env.sink.replies[2].dedupe_key != reply.dedupe_key


async def test_status_callbacks_become_delivery_reports(env: Env) -> None:
    ok = await env.channel.send(_msg())
    bad = await env.channel.send(_msg(to="+8613900000009", key="d2"))
    status, body = await env.sim.send_status_reports(env.urls["status"])
    assert status == 200 and json.loads(body)["result"] == 0
    by_id = {r.provider_id: r for r in env.sink.reports}
    assert (by_id[ok.provider_id].delivered, by_id[ok.provider_id].final) == (True, True)
    assert (by_id[bad.provider_id].delivered, by_id[bad.provider_id].final) == (False, True)
    assert by_id[bad.provider_id].error is not None
    assert by_id[ok.provider_id].dedupe_key == f"{ok.provider_id}:SUCCESS"


async def test_simulator_pushes_status_reports_when_configured(env: Env) -> None:
    env.sim.status_callback_url = env.urls["status"]
    receipt = await env.channel.send(_msg())
    await env.sink.wait(lambda: len(env.sink.reports) == 1)
    assert env.sink.reports[0].provider_id == receipt.provider_id
    assert env.sink.reports[0].delivered


async def test_wrong_token_is_refused_and_sink_untouched(env: Env) -> None:
    payload = {
        "extend": "",
        "mobile": "13800000001",
        "nationcode": "86",
        "sign": SIGN,
        "text": "1",
        "time": 1,
    }
    for kind in ("reply", "status"):
        forged = env.urls[kind].replace(CB_TOKEN, "cb-0000000000000000000")
        async with env.http.post(forged, json=[payload] if kind == "status" else payload) as resp:
            assert resp.status == 403
    assert env.sink.replies == [] and env.sink.reports == []


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("reply", b"{not json"),
        ("reply", b"[]"),
        ("reply", json.dumps({"mobile": "13800000001"}).encode()),
        ("status", b"\xff\xfe"),
        ("status", json.dumps([{"sid": "x", "report_status": "SUCCESS"}, {"sid": ""}]).encode()),
    ],
)
async def test_malformed_callbacks_are_400(env: Env, kind: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    async with env.http.post(env.urls[kind], data=body, headers=headers) as resp:
        assert resp.status == 400
    assert env.sink.replies == [] and env.sink.reports == []


def test_short_callback_token_is_rejected() -> None:
    with pytest.raises(ValueError, match="callback_token"):
        TencentSms(
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            sdk_app_id=APP_ID,
            sign_name=SIGN,
            template_id=TEMPLATE,
            callback_token="short",
        )


async def test_a_thousand_concurrent_sends_are_each_accepted_once(env: Env) -> None:
    # How fast: bench/w1.py (raw_sdk_single), never a timed test.
    n = 1000
    receipts = await asyncio.gather(
        *(env.channel.send(_msg(to=f"+86138{i:08d}", key=f"bulk-{i}")) for i in range(n))
    )
    await env.sim.wait_for_messages(n)
    assert len({r.provider_id for r in receipts}) == n
