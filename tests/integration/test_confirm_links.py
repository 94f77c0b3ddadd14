"""Signed confirm links: the link in the message → the mobile page → 收到 → 反馈, through the
real HTTP path; guessed, reused, expired and cancelled tokens change nothing."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import func, select

from devtools.simulators.official_link import answer_link
from support.channel_stack import (
    LINK_RE,
    Stack,
    build_stack,
    imminent,
    stop_stack,
    write_templates,
)
from support.users import bearer, token_for
from warnd.confirm.feedback import people_moved_by_township
from warnd.db.models import ConfirmLink, Event, Feedback

WARNING = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或“收到”确认。\""
WARNING_LINK = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或点击确认：{link}\""


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    st = await build_stack(db_url, tmp_path, templates=write_templates(tmp_path, {WARNING: WARNING_LINK}))
    try:
        yield st
    finally:
        await stop_stack(st)


async def links_by_phone(st: Stack, n: int) -> dict[str, str]:
    msgs = await st.twilio.wait_for_messages(n, timeout=30)
    out = {}
    for m in msgs:
        found = LINK_RE.search(m.body)
        assert found, m.body
        assert found.group(0).startswith(st.base + "/c/")
        out[m.to] = found.group(1)
    return out


async def count(st: Stack, model: type, **where: object) -> int:
    async with st.engine.db.session() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int((await s.exec(q)).one())


async def test_link_confirm_and_feedback_round_trip(stack: Stack) -> None:
    alert = await stack.post_cap(imminent())
    links = await links_by_phone(stack, 4)
    assert len(set(links.values())) == 4  # one token per recipient and call
    token = links["+8613900000001"]

    # Only hashes are stored.
    async with stack.engine.db.session() as s:
        hashes = set((await s.exec(select(ConfirmLink.token_hash))).all())
    assert hashlib.sha256(token.encode()).hexdigest() in hashes and token not in hashes

    r = await stack.http.get(f"/c/{token}")
    body = await r.text()
    assert r.status == 200 and "收到" in body and "1小时内将出现暴雨" in body and 'lang="zh-CN"' in body
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"
    assert (await stack.calls(alert["id"]))["张书记"]["state"] == "open"  # GET changes nothing

    r = await stack.http.post(f"/c/{token}", data={"ok": "1"})
    page = await r.text()
    assert r.status == 200 and "已确认收到" in page
    calls = await stack.calls(alert["id"])
    assert calls["张书记"]["state"] == "confirmed" and calls["张书记"]["confirmed_via"] == "link"
    ftoken = page.split('action="../f/', 1)[1].split('"', 1)[0]

    # Reused: a clear page, nothing changes.
    r = await stack.http.post(f"/c/{token}", data={"ok": "1"})
    assert r.status == 409 and "已确认" in await r.text()
    assert await count(stack, Event, kind="call_confirmed") == 1
    # The feedback token is not a confirm token and vice versa (single purpose).
    assert (await stack.http.post(f"/c/{ftoken}")).status == 404
    assert (await stack.http.get(f"/f/{token}")).status == 404

    # A bad form is refused and does not use the token up.
    r = await stack.http.post(f"/f/{ftoken}", data={"action": "transferred", "people_moved": "-3"})
    assert r.status == 400 and "整数" in await r.text()
    r = await stack.http.post(f"/f/{ftoken}", data=[("action", "transferred"), ("action", "gong"),
                                                     ("people_moved", "12"), ("note", "转移至村部")])
    assert r.status == 200 and "反馈已提交" in await r.text()
    r = await stack.http.post(f"/f/{ftoken}", data={"action": "other", "people_moved": "5"})
    assert r.status == 409
    assert await count(stack, Feedback) == 1

    fb = (await stack.calls(alert["id"]))["张书记"]
    assert fb["people_moved"] == 12
    assert fb["feedback"][0]["actions_zh"] == ["已转移", "已鸣锣吹哨"] and fb["feedback"][0]["note"] == "转移至村部"
    summary = await people_moved_by_township(stack.engine.db)
    assert summary == [{"code": "431222100", "name": "官庄镇", "people_moved": 12, "reports": 1, "calls": 1,
                        "actions": {"transferred": 1, "gong": 1}}]


async def test_guessed_expired_and_cancelled_tokens_change_nothing(stack: Stack) -> None:
    alert = await stack.post_cap(imminent())
    links = await links_by_phone(stack, 4)
    for guess in (secrets.token_urlsafe(24), "short", "x" * 200, "A" * 31 + "!"):
        r = await stack.http.post(f"/c/{guess}")
        assert r.status == 404 and "链接无效" in await r.text()

    # The duty room cancels (and a second person approves): links of that warning are dead.
    r = await stack.http.post(f"/api/v1/alerts/{alert['id']}/cancel", json={"reason": "雨停"}, headers=stack.officer)
    assert r.status == 202
    leader = bearer(await token_for(stack.engine.db, "lidb", "approver"))
    r = await stack.http.post(f"/api/v1/approvals/{(await r.json())['approval']}/approve", headers=leader)
    assert r.status == 200
    r = await stack.http.post(f"/c/{links['+8613900000002']}")
    assert r.status == 410 and "失效" in await r.text()

    assert await count(stack, Event, kind="link_confirmed") == 0


async def test_links_expire_with_the_warning(stack: Stack) -> None:
    alert = await stack.post_cap(imminent())
    links = await links_by_phone(stack, 4)
    await stack.clock.advance(timedelta(hours=14))  # CAP expires = onset + 12 h
    for token in links.values():
        r = await stack.http.get(f"/c/{token}")
        assert r.status == 410
        r = await stack.http.post(f"/c/{token}")
        assert r.status == 410 and "失效" in await r.text()
    calls = await stack.calls(alert["id"])
    assert not any(c["state"] == "confirmed" for c in calls.values())
    assert await count(stack, Event, kind="link_confirmed") == 0


async def test_answer_link_helper_plays_an_official(stack: Stack) -> None:
    alert = await stack.post_cap(imminent())
    links = await links_by_phone(stack, 4)
    async with aiohttp.ClientSession() as session:
        ok = await answer_link(session, f"{stack.base}/c/{links['+8613900000003']}", actions=["door_knock"],
                               people_moved=7, note="已通知全部农户")
        assert ok
        assert not await answer_link(session, f"{stack.base}/c/{links['+8613900000003']}")  # used
    w = (await stack.calls(alert["id"]))["王网格"]
    assert w["confirmed_via"] == "link" and w["people_moved"] == 7
