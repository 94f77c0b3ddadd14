"""WeCom (企业微信): template cards with a 收到 button through the local WeCom server; the
button's encrypted, signed callback confirms; forged, replayed and stale callbacks do not."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import func, select

from channels.base import OutboundMessage, PermanentSendError, TransientSendError
from channels.wecom import CALLBACK_PATH, WeComApp, WeComRobot, split_link
from channels.wecom_crypto import WeComCrypto, WeComCryptoError
from devtools.simulators.wecom_api import WeComApi
from support.channel_stack import LINK_RE, Stack, build_stack, imminent, stop_stack, write_policy
from warnd.db.models import Delivery, Event

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def test_crypto_matches_wecom_documentation_sample() -> None:
    # The URL-verification example of WeCom's 加解密方案 documentation.
    c = WeComCrypto("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7")
    echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    assert c.signature("1409659589", "263014780", echostr) == "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    assert c.decrypt(echostr) == "1616140317555161061"
    assert c.decrypt(c.encrypt("<xml>收到</xml>")) == "<xml>收到</xml>"
    other = WeComCrypto("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "ww-another-corp")
    with pytest.raises(WeComCryptoError):
        other.decrypt(echostr)  # ReceiveId (CorpID) must match


def app_for(sim: WeComApi, **kw: object) -> WeComApp:
    return WeComApp(corp_id=sim.corp_id, corp_secret=sim.corp_secret, agent_id=sim.agent_id, token=sim.token,
                    encoding_aes_key=sim.encoding_aes_key, api_base_url=sim.base_url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    sim = WeComApi()
    await sim.start()
    policy = write_policy(tmp_path, '["sms", "wecom"]')
    st = await build_stack(db_url, tmp_path, policy=policy, channels=lambda base, tw: {"wecom": app_for(sim)})
    st.extra["wecom"] = sim
    st.extra["callback"] = st.base + CALLBACK_PATH
    try:
        yield st
    finally:
        await stop_stack(st)
        await sim.stop()


async def confirms(st: Stack) -> int:
    async with st.engine.db.session() as s:
        return int((await s.exec(select(func.count()).select_from(Event).where(Event.kind == "call_confirmed"))).one())


async def test_button_confirms_and_forged_or_replayed_callbacks_are_refused(stack: Stack) -> None:
    sim: WeComApi = stack.extra["wecom"]
    url: str = stack.extra["callback"]
    status, answer, plain = await sim.verify_url(url)  # the console's URL check
    assert status == 200 and answer == plain

    alert = await stack.post_cap(imminent())
    cards = {m.to: m for m in await sim.wait_for_messages(3, timeout=30)}
    assert set(cards) == {"zhangsj", "lizr", "wangwg"}  # 赵组长 has no WeCom id: SMS only
    card = cards["zhangsj"].extra["card"]
    assert card["button_list"][0] == {"text": "收到", "style": 1, "key": "confirm"}
    feedback = card["button_list"][1]
    assert feedback["text"] == "反馈" and LINK_RE.match(feedback["url"])
    assert "1小时内将出现暴雨" in card["sub_title_text"] and "http" not in card["sub_title_text"]

    cb = await sim.press_button(cards["zhangsj"], url)
    assert cb.status == 200 and "<ReplaceName><![CDATA[已确认]]></ReplaceName>" in cb.reply
    calls = await stack.calls(alert["id"])
    assert calls["张书记"]["state"] == "confirmed" and calls["张书记"]["confirmed_via"] == "wecom"

    # Replayed: the same signed request again.
    again = await sim.post_callback(type(cb)(url=cb.url, body=cb.body))
    assert again.status == 403
    # Forged: encrypted and signed with a key that is not the application's.
    forger = WeComApi(corp_id=sim.corp_id, token=sim.token,
                      encoding_aes_key=base64.b64encode(secrets.token_bytes(32)).decode()[:43])
    try:
        forged = await forger.press_button(cards["lizr"], url)
        assert forged.status == 403
        # Signed with the right token but a body that is not ours to decrypt: refused too.
        enc = forger.crypto.encrypt("<xml/>")
        q = sim._signed_query(enc)
        bad = await sim.post_callback(type(cb)(
            url=url + "?" + "&".join(f"{k}={v}" for k, v in q.items()),
            body=f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"))
        assert bad.status == 403
    finally:
        await forger.stop()
    # Stale: a callback signed ten minutes ago.
    stale = await sim.press_button(cards["lizr"], url, timestamp=int(datetime.now(UTC).timestamp()) - 600)
    assert stale.status == 403
    # Someone else's card: the userid must be the card's recipient.
    other = await sim.press_button(cards["wangwg"], url, user="lizr")
    assert other.status == 200 and "未能确认" in other.reply
    calls = await stack.calls(alert["id"])
    assert calls["李主任"]["state"] == "open" and calls["王网格"]["state"] == "open"
    assert await confirms(stack) == 1

    # The card's 反馈 link opens the confirm page of 张书记's call.
    token = LINK_RE.match(feedback["url"]).group(1)  # type: ignore[union-attr]
    r = await stack.http.get(f"/c/{token}")
    assert r.status == 200 and "张书记" in await r.text()


async def test_access_token_is_cached_and_refreshed() -> None:
    sim = WeComApi()
    await sim.start()
    app = app_for(sim, per_user_per_minute=3)
    try:
        def msg(i: int) -> OutboundMessage:
            return OutboundMessage(f"k{i}", "zhangsj", f"【预警】测试{i}", NOW)

        for i in range(2):
            await app.send(msg(i))
        assert sim.tokens_issued == 1 and app.token_fetches == 1
        sim.expire_tokens()  # WeCom answers 42001: fetch a new token once and resend
        r = await app.send(msg(2))
        assert sim.tokens_issued == 2 and r.provider_id.startswith("warnd-")
        with pytest.raises(TransientSendError) as exc:  # 4th card to one member within a minute
            await app.send(msg(3))
        assert exc.value.retry_after and exc.value.retry_after > 50
        sim.fail_next(1, 45009)  # API frequency limit
        with pytest.raises(TransientSendError):
            await app.send(OutboundMessage("k9", "lizr", "x", NOW))
        with pytest.raises(PermanentSendError):
            await app.send(OutboundMessage("k10", "", "x", NOW))
        assert len(sim.messages) == 3
    finally:
        await app.close()
        await sim.stop()


async def test_group_robot_markdown() -> None:
    sim = WeComApi(robot_keys={"robot-key-1"})
    await sim.start()
    robot = WeComRobot(api_base_url=sim.base_url)
    try:
        body = "【临灾预警】沅陵县气象台：1小时内将出现暴雨。请确认：http://x.example/c/" + "A" * 32
        await robot.send(OutboundMessage("g1", "robot-key-1", body, NOW))
        assert sim.robot_messages[0].body.startswith('<font color="warning">【临灾预警】</font>')
        assert "[打开确认页](http://x.example/c/" in sim.robot_messages[0].body
        with pytest.raises(PermanentSendError):
            await robot.send(OutboundMessage("g2", "unknown-key", body, NOW))
    finally:
        await robot.close()
        await sim.stop()
    assert split_link("无链接")[1] is None


async def test_simulated_member_taps_by_itself(stack: Stack) -> None:
    sim: WeComApi = stack.extra["wecom"]
    sim.callback_url, sim.auto_press, sim.press_delay = stack.extra["callback"], {"lizr"}, 0.05
    alert = await stack.post_cap(imminent())
    await sim.wait_until(lambda: any(c.status == 200 for c in sim.callbacks), timeout=30)
    calls = await stack.calls(alert["id"])
    assert calls["李主任"]["confirmed_via"] == "wecom" and calls["张书记"]["state"] == "open"


async def test_deputy_confirms_for_the_silent_official_by_button(stack: Stack) -> None:
    sim: WeComApi = stack.extra["wecom"]
    alert = await stack.post_cap(imminent())
    await sim.wait_for_messages(3, timeout=30)
    await stack.twilio.wait_for_messages(4, timeout=30)
    while True:  # until the sends are recorded (the confirm windows restart from them)
        async with stack.engine.db.session() as s:
            if len((await s.exec(select(Event.id).where(Event.kind == "delivery_sent"))).all()) >= 7:
                break
        await asyncio.sleep(0.05)
    await stack.clock.advance(timedelta(minutes=10, seconds=1))  # rung 1: resend to all
    await sim.wait_for_messages(6, timeout=30)
    await stack.clock.advance(timedelta(minutes=5))  # rung 2: deputies
    msgs = await sim.wait_for_messages(8, timeout=30)
    deputy = [m for m in msgs if "替补叫应" in m.body and "李主任" in m.body]
    assert [m.to for m in deputy] == ["zhangsj"]
    cb = await sim.press_button(deputy[0], stack.extra["callback"])
    assert cb.status == 200 and "已确认" in cb.reply
    calls = await stack.calls(alert["id"])
    assert calls["李主任"]["state"] == "confirmed" and calls["李主任"]["confirmed_via"] == "wecom"
    assert calls["李主任"]["confirmed_by"] == calls["张书记"]["person_id"]
    assert calls["张书记"]["state"] == "open"  # his own call is a different card


async def test_no_wecom_delivery_is_planned_for_someone_without_a_wecom_account(stack: Stack) -> None:
    await stack.post_cap(imminent())
    await stack.extra["wecom"].wait_for_messages(3, timeout=30)
    async with stack.engine.db.read() as s:
        to = sorted((await s.exec(select(Delivery.to_address).where(Delivery.channel == "wecom"))).all())
    assert to == ["lizr", "wangwg", "zhangsj"]  # 赵组长 (no userid) gets SMS only, no empty address
