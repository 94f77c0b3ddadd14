"""发布预警 and the two-person rule in a real browser (Debian's headless Chromium, Playwright):
a duty officer composes a red warning from the township/village tree and the joint texts,
previews it, fails to publish it alone; an approver logs in, approves it, and sees it
published with its calls opened.

Needs `chromium` (apt) and `playwright` (pip; its bundled driver, no browser download). Without
them the test is skipped with the reason shown."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from support.browser import launch, require_browser
from support.channel_stack import Stack, build_stack, stop_stack
from support.users import PASSWORD, add_user
from warnd.db.models import Alert, Call, Event

playwright_api = require_browser()


@pytest.fixture
async def stack(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Stack]:
    st = await build_stack(sqlite_url, tmp_path)
    await add_user(st.engine.db, "zhangwei", "duty_officer", display_name="张伟")
    await add_user(st.engine.db, "lifang", "approver", display_name="李芳")
    try:
        yield st
    finally:
        await stop_stack(st)


async def login(page: Any, base: str, name: str) -> None:
    await page.goto(base + "/login")
    await page.get_by_label("登录名").fill(name)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.get_by_role("heading", name=re.compile("您好")).wait_for()


async def count(st: Stack, model: Any) -> int:
    async with st.engine.db.read() as s:
        return int((await s.exec(select(func.count()).select_from(model))).one())


async def test_compose_red_fail_alone_approve_as_second_person(stack: Stack, tmp_path: Path) -> None:
    async with playwright_api.async_playwright() as p:
        browser = await launch(p)
        try:
            errors: list[str] = []
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page = await ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await login(page, stack.base, "zhangwei")
            await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="发布预警").click()
            await page.get_by_role("heading", name="发布预警").wait_for()

            await page.get_by_label("灾种").select_option("rainstorm")
            await page.get_by_label("红色").check()
            await page.get_by_label("临灾预警（1小时）").check()
            # The tree: search narrows it, the township's "全镇" ticks its villages.
            await page.get_by_label("搜索乡镇或村").fill("辰龙")
            village = page.get_by_label("辰龙关村")
            await village.wait_for()
            await page.get_by_label("官庄镇 全镇").check()
            assert await village.is_checked()
            await page.get_by_label("搜索乡镇或村").fill("不存在的村")
            assert not await village.is_visible()
            await page.get_by_label("搜索乡镇或村").fill("")

            await page.get_by_role("button", name="套用模板").click()
            headline = page.get_by_label("标题")
            await page.wait_for_function("document.querySelector('input[name=headline]').value.length > 0")
            assert await headline.input_value() == "沅陵县防汛抗旱指挥部发布暴雨红色临灾预警"
            assert "转移" in await page.get_by_label("防御指引").input_value()
            assert await page.get_by_label("辰龙关村").is_checked()  # the choice survives the round trip

            await page.get_by_role("button", name="预览").click()
            preview = page.get_by_role("region", name="发送预览")
            await preview.wait_for()
            text = await preview.inner_text()
            assert "短信" in text and re.search(r"\d+ 字 · 每人 \d+ 条", text)
            assert "叫应责任人" in text and "公众 0 人" in text
            assert "须由另一位带班领导审核" in text
            sms = await preview.locator("pre.text").first.inner_text()
            # The sender once, the area in words (issue 12, part 6).
            assert sms.startswith("【临灾预警】沅陵县防汛抗旱指挥部发布暴雨红色临灾预警，影响沅陵县全境。")
            await page.screenshot(path=str(tmp_path / "compose-preview.png"), full_page=True)

            # Publishing alone: held for approval, nothing goes out.
            await page.get_by_role("button", name="发布", exact=True).click()
            await page.wait_for_url(re.compile(r"/console/approvals/\d+$"))
            assert await page.locator("[data-state]").inner_text() == "待审核"
            assert "须由另一位带班领导审核" in await page.get_by_role("note").inner_text()
            assert await page.get_by_role("button", name="批准发布").count() == 0
            approval_id = int(page.url.rsplit("/", 1)[1])
            assert errors == []  # no CSP complaints, no failed loads
            # Even a forged request from the officer's own session is refused.
            status = await page.evaluate(
                f"warnd.post('/api/v1/approvals/{approval_id}/approve', {{}}).then(r => r.status)")
            assert status == 403
            assert await count(stack, Alert) == 0 and await count(stack, Call) == 0
            assert [e for e in errors if "403" not in e] == []
            errors.clear()
            await ctx.close()

            # A second person: the approver sees it waiting and approves it.
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page = await ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await login(page, stack.base, "lifang")
            await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="待审核").click()
            assert await page.locator("[data-pending-count]").inner_text() == "1"
            await page.get_by_role("link", name=re.compile("发布预警：沅陵县防汛抗旱指挥部发布暴雨红色临灾预警")).click()
            # The approver reads exactly what the officer previewed.
            assert sms in await page.locator("pre.text").first.inner_text()
            await page.get_by_label("审核意见（可选）").fill("同意发布")
            await page.get_by_role("button", name="批准发布").click()
            result = page.get_by_role("status")
            await result.wait_for()
            assert "已发布" in await result.inner_text()
            assert await page.locator("[data-state]").inner_text() == "已批准"
            calls = int(await page.locator("[data-calls]").inner_text())
            await page.screenshot(path=str(tmp_path / "compose-approved.png"), full_page=True)
            assert errors == []
            await ctx.close()
        finally:
            await browser.close()

    async with stack.engine.db.read() as s:
        alert = (await s.exec(select(Alert))).one()
        opened = (await s.exec(select(func.count()).select_from(Call).where(Call.alert_id == alert.id))).one()
        accepted = (await s.exec(select(Event).where(Event.kind == "alert_accepted"))).one()
    assert (alert.colour, alert.step, alert.source) == ("red", "imminent", "console")
    assert opened == calls and calls >= 4  # the village's officials and the township head
    assert (accepted.data["actor"], accepted.data["approved_by"]) == ("zhangwei", "lifang")
