"""Voice calls (智能外呼) with the real twilio SDK against the local Twilio server, which
plays the callee: press 1 confirms, * repeats, silence or no answer escalates; 叫醒 at night."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from channels.voice_twilio import CONFIRMED, GATHER_PATH, PROMPT, TwilioVoice
from support.channel_stack import Stack, build_stack, imminent, stop_stack, write_policy
from warnd.config import PolicyError, load_roles, parse_policy
from warnd.db.models import Delivery, Event

NIGHT = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)  # 00:30 Beijing time
NIGHT_TABLE = '[night]\nstart = "22:00"\nend = "07:00"\nchannels = ["voice"]\n'


def voice(base: str, twilio: object) -> dict[str, TwilioVoice]:
    from devtools.simulators.twilio_api import TwilioApi

    assert isinstance(twilio, TwilioApi)
    return {"voice": TwilioVoice(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                 from_number="+15005550006", public_base_url=base, api_base_url=twilio.base_url,
                                 gather_seconds=5, attempts=2)}


@pytest.fixture
async def night(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Village officials are texted by day; at night a voice call goes first (叫醒)."""
    policy = write_policy(tmp_path, '["sms", "voice"]', target_channels='["sms"]', extra=NIGHT_TABLE)
    st = await build_stack(db_url, tmp_path, policy=policy, channels=voice, start=NIGHT)
    try:
        yield st
    finally:
        await stop_stack(st)


@pytest.fixture
async def day(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """By day: SMS first; the first rung of the ladder calls (call if still silent)."""
    policy = write_policy(tmp_path, '["sms", "voice"]', target_channels='["sms"]', rung_channels='["voice"]')
    st = await build_stack(db_url, tmp_path, policy=policy, channels=voice)
    try:
        yield st
    finally:
        await stop_stack(st)


async def wait_for_event(st: Stack, kind: str, n: int = 1, seconds: float = 30) -> None:
    """Wait for `n` events of `kind` (e.g. the sends recorded, so confirm windows restarted)."""
    async with asyncio.timeout(seconds):
        while True:
            async with st.engine.db.session() as s:
                if len((await s.exec(select(Event.id).where(Event.kind == kind))).all()) >= n:
                    return
            await asyncio.sleep(0.05)


async def calls_to(st: Stack, n: int) -> dict[str, object]:
    await st.twilio.wait_until(lambda: len(st.twilio.calls) >= n, timeout=30)
    return {c.to: c for c in st.twilio.calls}


async def test_night_call_press_star_then_1_confirms(night: Stack) -> None:
    st = night
    alert = await st.post_cap(imminent(sent=NIGHT))
    placed = await calls_to(st, 3)
    # The three village officials (sms only by day) are called at night; the warning text is spoken.
    assert {"+8613900000001", "+8613900000002", "+8613900000003"} <= set(placed)
    call = st.twilio.calls[[c.to for c in st.twilio.calls].index("+8613900000001")]
    assert 'language="zh-CN"' in call.body and 'numDigits="1"' in call.body and "1小时内将出现暴雨" in call.body

    said = await st.twilio.answer(call, ["*", "1"])
    assert sum("1小时内将出现暴雨" in s for s in said) == 2  # * repeated the message
    assert PROMPT in said and said[-1] == CONFIRMED
    calls = await st.calls(alert["id"])
    assert calls["张书记"]["state"] == "confirmed" and calls["张书记"]["confirmed_via"] == "voice"
    assert calls["李主任"]["state"] == "open"
    async with st.engine.db.session() as s:
        d = (await s.exec(select(Delivery).where(Delivery.provider_id == call.id))).one()
    assert d.channel == "voice" and d.state == "delivered"  # the completed status callback


async def test_forged_key_press_is_refused(night: Stack) -> None:
    st = night
    alert = await st.post_cap(imminent(sent=NIGHT))
    placed = await calls_to(st, 3)
    call = placed["+8613900000002"]
    params = {"CallSid": call.id, "Digits": "1", "To": call.to, "From": "+15005550006"}  # type: ignore[attr-defined]
    r = await st.http.post(GATHER_PATH + "?attempt=1", data=params)
    assert r.status == 403
    r = await st.http.post(GATHER_PATH + "?attempt=1", data=params, headers={"X-Twilio-Signature": "AAAA"})
    assert r.status == 403
    # Signed for another URL (a replay onto a different attempt) fails too.
    sig = st.twilio.sign(st.base + GATHER_PATH + "?attempt=2", params)
    r = await st.http.post(GATHER_PATH + "?attempt=1", data=params, headers={"X-Twilio-Signature": sig})
    assert r.status == 403
    assert (await st.calls(alert["id"]))["李主任"]["state"] == "open"


async def test_no_answer_escalates_at_once(day: Stack) -> None:
    st = day
    alert = await st.post_cap(imminent())
    await st.twilio.wait_for_messages(4, timeout=30)  # the SMS warnings
    await wait_for_event(st, "delivery_sent", 4)  # recorded: the confirm windows run from now
    assert st.twilio.calls == []  # nobody is called by day at first
    st.twilio.no_answer_numbers.add("+8613900000002")
    await st.clock.advance(timedelta(minutes=10, seconds=1))  # window over: rung 1 calls
    await calls_to(st, 4)
    # 李主任 did not pick up: his rung failed on every channel, so the deputy rung fires now,
    # without waiting the five minutes of the rung: an SMS to his deputy 张书记 (held 20 s by the
    # outbox's per-number throttle, as 张书记 was just called himself).
    await wait_for_event(st, "call_channels_failed")
    await st.clock.advance(timedelta(seconds=21))
    msgs = await st.twilio.wait_for_messages(5, timeout=30)
    deputy = [m for m in msgs if "替补叫应" in m.body]
    assert [m.to for m in deputy] == ["+8613900000001"] and "李主任" in deputy[0].body
    calls = await st.calls(alert["id"])
    assert calls["李主任"]["level"] == 2 and calls["王网格"]["level"] == 1
    async with st.engine.db.session() as s:
        kinds = (await s.exec(select(Event.kind).where(Event.call_id == calls["李主任"]["id"]))).all()
        failed = (await s.exec(select(Delivery).where(Delivery.channel == "voice",
                                                      Delivery.to_address == "+8613900000002"))).one()
    assert "call_channels_failed" in kinds and failed.state == "failed" and "no-answer" in (failed.last_error or "")


async def test_silence_after_two_plays_counts_as_failed(day: Stack) -> None:
    st = day
    alert = await st.post_cap(imminent())
    await st.twilio.wait_for_messages(4, timeout=30)
    await wait_for_event(st, "delivery_sent", 4)
    await st.clock.advance(timedelta(minutes=10, seconds=1))
    placed = await calls_to(st, 4)
    said = await st.twilio.answer(placed["+8613900000003"], ["", ""])  # type: ignore[arg-type]
    assert sum("1小时内将出现暴雨" in s for s in said) == 2 and "未收到确认" in said[-1]
    await wait_for_event(st, "call_channels_failed")
    await st.clock.advance(timedelta(seconds=21))
    msgs = await st.twilio.wait_for_messages(5, timeout=30)
    assert any("替补叫应" in m.body and "王网格" in m.body for m in msgs)  # his deputy 李主任
    assert (await st.calls(alert["id"]))["王网格"]["state"] == "open"


def test_night_table_is_validated() -> None:
    roles = load_roles()
    base = 'channels = ["sms"]\n[ladders.l]\nrungs = [{ action = "duty_room" }]\n' \
           '[[rules]]\nhazards = "*"\nstep = "imminent"\n[[rules.targets]]\nlevel = "village"\n' \
           'roles = ["village_head"]\nconfirm_minutes = 5\nladder = "l"\n'
    with pytest.raises(PolicyError, match=r"night\.channels"):
        parse_policy(base + '[night]\nstart = "22:00"\nend = "07:00"\nchannels = ["voice"]\n', roles)
    with pytest.raises(PolicyError, match=r"night\.start"):
        parse_policy(base + '[night]\nstart = "late"\nend = "07:00"\nchannels = ["sms"]\n', roles)
    p = parse_policy(base.replace('["sms"]', '["sms", "voice"]', 1)
                     + '[night]\nstart = "22:00"\nend = "07:00"\nchannels = ["voice"]\n', roles)
    assert p.with_night_channels(("sms",), NIGHT) == ("voice", "sms")
    assert p.with_night_channels(("sms",), NIGHT - timedelta(hours=10)) == ("sms",)
