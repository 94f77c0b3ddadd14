"""发布预警 over HTTP with a console session: the form, the joint texts, the preview (what each
channel sends, SMS segments, reach), publishing through the ingest as a CAP document from the
console's sender, the two-person rule for red or imminent warnings, and clear 4xx for bad
forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from support.channel_stack import Stack, build_stack, imminent, stop_stack
from support.users import PASSWORD, add_user
from warnd.cap.classify import explicit_step
from warnd.cap.parser import parse_cap
from warnd.config import SpeakersCfg
from warnd.core.compose import read_draft
from warnd.core.domain import Step
from warnd.db.models import Alert, Approval, Call, Delivery, Event, Speaker
from warnd.views.compose import ComposeContext, preview

VILLAGE, TOWNSHIP = "431222100200", "431222100"


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await build_stack(db_url, tmp_path)
    await add_user(stack.engine.db, "zhang", "duty_officer", display_name="张伟")
    await add_user(stack.engine.db, "lifang", "approver", display_name="李芳")
    try:
        yield stack
    finally:
        await stop_stack(stack)


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, name
    return m.group(1)


async def login(st: Stack, name: str) -> str:
    """Log in (the session cookie stays in the client's jar); returns the session's CSRF token."""
    st.http.session.cookie_jar.clear()
    page = await st.http.get("/login")
    html = await page.text()
    r = await st.http.post("/login", allow_redirects=False, data={
        "name": name, "password": PASSWORD, "csrf_token": hidden(html, "csrf_token"), "next": "/console/compose"})
    assert r.status == 303
    return hidden(await (await st.http.get("/console/compose")).text(), "csrf_token")


def form(csrf: str, action: str, **kw: Any) -> list[tuple[str, str]]:
    base = {"hazard": "rainstorm", "colour": "yellow", "step": "warning", "hours": "6",
            "headline": "沅陵县发布暴雨黄色预警", "description": "预计有暴雨。", "instruction": "请做好防御准备。"}
    base.update(kw)
    areas = base.pop("area", [VILLAGE])
    return [("csrf_token", csrf), ("action", action), *base.items(), *(("area", a) for a in areas)]


async def test_the_form_offers_the_roster_tree_and_fills_the_joint_texts(st: Stack) -> None:
    csrf = await login(st, "zhang")
    html = await (await st.http.get("/console/compose")).text()
    assert "官庄镇 全镇" in html and "辰龙关村" in html and 'value="431222100200"' in html
    r = await st.http.post("/console/compose", data=form(csrf, "template", colour="red", step="imminent",
                                                         headline="", instruction="", area=[TOWNSHIP]))
    html = await r.text()
    assert r.status == 200
    assert 'value="沅陵县防汛抗旱指挥部发布暴雨红色临灾预警"' in html
    assert "官庄镇（全镇）" in html and "请立即组织山洪、地质灾害危险区域" in html


async def test_preview_shows_each_channel_text_segments_and_reach(st: Stack) -> None:
    csrf = await login(st, "zhang")
    r = await st.http.post("/console/compose", data=form(csrf, "preview", instruction="请做好防御准备。" * 10))
    html = await r.text()
    assert r.status == 200
    # The SMS exactly as the ingest will compose it, with its length and segments.
    # (sender once, the area in words: templates.toml, issue 12 part 6)
    assert "【预警】沅陵县防汛抗旱指挥部发布暴雨黄色预警，影响沅陵县全境。请做好防御准备。" in html
    m = re.search(r"data-sms-length>(\d+) 字 · 每人 (\d+) 条", html)
    assert m and 70 < int(m.group(1)) <= 134 and int(m.group(2)) == 2
    assert re.search(r"data-officials>1<", html)  # the warning step calls the township head
    assert re.search(r"data-public>0<", html) and "未启用" in html
    assert re.search(r"data-speakers>0<", html)
    async with st.engine.db.read() as s:
        assert (await s.exec(select(Alert))).all() == []  # a preview stores nothing


async def test_a_yellow_warning_goes_straight_through_the_ingest_as_cap(st: Stack) -> None:
    csrf = await login(st, "zhang")
    shown = await (await st.http.post("/console/compose", data=form(csrf, "preview"))).text()
    previewed = html_unescape(re.findall(r'<pre class="text">(.*?)</pre>', shown, re.S)[0])
    r = await st.http.post("/console/compose", data=form(csrf, "publish", step="warning"), allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/console/compose?published=")
    alert_id = int(r.headers["Location"].rsplit("=", 1)[1])
    async with st.engine.db.read() as s:
        alert = await s.get(Alert, alert_id)
        ev = (await s.exec(select(Event).where(Event.kind == "alert_accepted"))).one()
        calls = (await s.exec(select(Call).where(Call.alert_id == alert_id))).all()
    assert alert is not None and alert.source == "console" and alert.sender == "warnd-console@431222"
    msg = parse_cap(alert.raw_xml.encode())
    assert explicit_step(msg.infos[0]) == "warning" and msg.note == "值班台编写：zhang"
    assert ev.data["actor"] == "zhang" and "approved_by" not in ev.data
    assert len(calls) == 1
    async with st.engine.db.read() as s:
        sent = (await s.exec(select(Delivery.body).where(Delivery.alert_id == alert_id, Delivery.channel == "sms", Delivery.purpose == "warning"))).one()
    assert sent == previewed  # the preview is exactly what went out
    page = await (await st.http.get(r.headers["Location"])).text()
    assert "已发布" in page and re.search(r"data-calls>1<", page)


async def test_red_or_imminent_waits_for_a_second_person(st: Stack) -> None:
    csrf = await login(st, "zhang")
    r = await st.http.post("/console/compose", data=form(csrf, "publish", colour="red"), allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/console/approvals/")
    page = await (await st.http.get(r.headers["Location"])).text()
    assert "待审核" in page and "须由另一位带班领导审核" in page and "批准发布" not in page
    async with st.engine.db.read() as s:
        assert (await s.exec(select(Alert))).all() == []
        approval = (await s.exec(select(Approval))).one()
    assert (approval.author, approval.colour, approval.summary["officials"]) == ("zhang", "red", 1)
    # The duty officer cannot approve it.
    r = await st.http.post(f"/console/approvals/{approval.id}/approve", data={"csrf_token": csrf})
    assert r.status == 403
    # The approver can.
    csrf = await login(st, "lifang")
    page = await (await st.http.get(f"/console/approvals/{approval.id}")).text()
    assert "批准发布" in page
    r = await st.http.post(f"/console/approvals/{approval.id}/approve", data={"csrf_token": csrf, "note": "同意"})
    page = await r.text()
    assert r.status == 200 and "已发布" in page and re.search(r"data-calls>\d+<", page)
    async with st.engine.db.read() as s:
        alert = (await s.exec(select(Alert))).one()
        ev = (await s.exec(select(Event).where(Event.kind == "alert_accepted"))).one()
    assert alert.colour == "red" and (ev.data["actor"], ev.data["approved_by"]) == ("zhang", "lifang")


async def test_cancel_from_the_console_waits_for_approval(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("RS-X")))["id"]
    csrf = await login(st, "zhang")
    r = await st.http.post(f"/console/alerts/{alert_id}/cancel", data={"csrf_token": csrf, "reason": "雨停"},
                           allow_redirects=False)
    assert r.status == 303
    csrf = await login(st, "lifang")
    listing = await (await st.http.get("/console/approvals")).text()
    assert "解除预警" in listing and re.search(r"data-pending-count>1<", listing)
    r = await st.http.post(f"{r.headers['Location']}/reject", data={"csrf_token": csrf, "note": ""})
    assert r.status == 400 and "请填写理由" in await r.text()
    r = await st.http.post("/console/alerts/999/cancel", data={"csrf_token": csrf})
    assert r.status == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"colour": "purple"}, "请选择预警颜色"), ({"area": []}, "请至少选择一个乡镇或村"),
    ({"hours": "0"}, "有效时长"), ({"headline": ""}, "请填写标题"), ({"hazard": "<script>"}, "请选择灾种"),
])
async def test_a_bad_form_is_a_400_page_naming_the_field(st: Stack, change: dict[str, Any], field: str) -> None:
    csrf = await login(st, "zhang")
    r = await st.http.post("/console/compose", data=form(csrf, "publish", **change))
    assert r.status == 400 and field in await r.text()
    async with st.engine.db.read() as s:
        assert (await s.exec(select(Alert.id).where(col(Alert.id).is_not(None)))).all() == []


async def test_preview_counts_the_loudspeakers_that_will_play(st: Stack) -> None:
    app = st.engine
    now = st.clock.now()
    async with app.db.session() as s, s.begin():
        s.add_all([
            Speaker(device_id="spk-live", region_code=VILLAGE, online=True, last_seen_at=now, updated_at=now),
            Speaker(device_id="spk-dark", region_code=VILLAGE + "001", online=None, updated_at=now),  # never seen
            Speaker(device_id="spk-away", region_code="431222101300", online=True, last_seen_at=now, updated_at=now),
        ])
    settings = app.settings.model_copy(update={"speakers": SpeakersCfg(enabled=True, steps=("imminent",))})
    ctx = ComposeContext(app.db, settings, app.policy, app.templates, app.roles, app.vocab, app.roster)
    draft = read_draft({"hazard": "rainstorm", "colour": "orange", "step": "imminent", "hours": "3",
                        "headline": "暴雨橙色临灾预警", "instruction": "请立即转移。"},
                       [VILLAGE], (await app.roster.get()).regions, app.vocab.codes)
    shown = await preview(ctx, draft, now)
    assert (shown.speakers, shown.speakers_dark) == (2, 1)
    assert "暴雨橙色临灾预警" in shown.speaker_text and "请立即转移" in shown.speaker_text
    assert shown.needs_approval and shown.public == 0
    at_warning = await preview(ctx, replace(draft, step=Step.WARNING), now)
    assert at_warning.speakers is None and "本阶段不播放" in at_warning.speakers_note
    off = await preview(ComposeContext(app.db, app.settings, app.policy, app.templates, app.roles, app.vocab,
                                       app.roster), draft, now)
    assert off.speakers is None and "未启用" in off.speakers_note
