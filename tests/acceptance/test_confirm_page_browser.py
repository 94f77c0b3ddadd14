"""The confirm page in a real browser: Debian's headless Chromium driven by Playwright, on a
phone-sized viewport. Tap 收到, fill the 反馈 form, submit — as an official would.

Needs `chromium` (apt) and `playwright` (pip; its bundled driver, no browser download). Without
them the test is skipped with the reason shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.browser import launch, require_browser
from support.channel_stack import LINK_RE, Stack, build_stack, imminent, stop_stack, write_templates

WARNING = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或“收到”确认。\""
WARNING_LINK = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或点击确认：{link}\""

playwright_api = require_browser()


@pytest.fixture
async def stack(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Stack]:
    st = await build_stack(sqlite_url, tmp_path, templates=write_templates(tmp_path, {WARNING: WARNING_LINK}))
    try:
        yield st
    finally:
        await stop_stack(st)


async def test_confirm_page_on_a_phone(stack: Stack, tmp_path: Path) -> None:
    alert = await stack.post_cap(imminent())
    msgs = await stack.twilio.wait_for_messages(4, timeout=30)
    link = next(m for m in msgs if m.to == "+8613900000001")
    url = LINK_RE.search(link.body).group(0)  # type: ignore[union-attr]

    async with playwright_api.async_playwright() as p:
        browser = await launch(p)
        try:
            ctx = await browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=3,
                                            is_mobile=True, has_touch=True, locale="zh-CN")
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url)
            button = page.get_by_role("button", name="收到")
            box = await button.bounding_box()
            assert box is not None and box["width"] >= 280 and box["height"] >= 48  # full width, thumb-sized
            assert await page.evaluate("document.scrollingElement.scrollWidth") <= 360  # no sideways scroll
            assert await page.get_by_text("1小时内将出现暴雨").is_visible()
            await page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)

            await button.tap()
            await page.get_by_text("已确认收到").wait_for()
            await page.get_by_label("已转移").check()
            await page.get_by_label("已鸣锣吹哨").check()
            await page.get_by_label("转移人数").fill("23")
            await page.get_by_label("情况说明").fill("已转移至村部安置点")
            await page.get_by_role("button", name="提交反馈").tap()
            await page.get_by_text("反馈已提交").wait_for()
            await page.screenshot(path=str(tmp_path / "feedback.png"), full_page=True)
            assert errors == []  # CSP violations would show here
        finally:
            await browser.close()

    c = (await stack.calls(alert["id"]))["张书记"]
    assert c["confirmed_via"] == "link" and c["people_moved"] == 23
    assert c["feedback"][0]["actions"] == ["transferred", "gong"]
