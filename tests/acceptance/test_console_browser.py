"""The console shell in a real browser: Debian's headless Chromium driven by Playwright. Log
in, see the shell (on a phone and on a duty-room wall screen), log out; then fail the password
until the account locks and see the lock-out, which holds even for the right password.

Needs `chromium` (apt) and `playwright` (pip; its bundled driver, no browser download). Without
them the test is skipped with the reason shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from support.browser import launch, require_browser
from support.channel_stack import Stack, build_stack, stop_stack
from support.users import PASSWORD, add_user
from warnd.db.models import Event

playwright_api = require_browser()


@pytest.fixture
async def stack(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Stack]:
    st = await build_stack(sqlite_url, tmp_path)
    await add_user(st.engine.db, "zhangwei", "duty_officer", display_name="张伟")
    try:
        yield st
    finally:
        await stop_stack(st)


async def test_login_shell_logout_and_lockout(stack: Stack, tmp_path: Path) -> None:
    failures = stack.engine.settings.auth.lockout_failures
    async with playwright_api.async_playwright() as p:
        browser = await launch(p)
        try:
            # A phone: log in, see the shell, no sideways scrolling, no CSP complaints.
            ctx = await browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=3,
                                            is_mobile=True, has_touch=True, locale="zh-CN")
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(stack.base + "/")
            assert page.url.endswith("/login")
            await page.get_by_label("登录名").fill("zhangwei")
            await page.get_by_label("密码").fill(PASSWORD)
            await page.get_by_role("button", name="登录").tap()
            await page.get_by_role("heading", name="您好，张伟").wait_for()
            assert page.url.endswith("/console")
            assert await page.locator(".who .role").inner_text() == "值班员"
            assert await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="值班台").is_visible()
            assert await page.evaluate("document.scrollingElement.scrollWidth") <= 360
            # The header clock is our script running (CSP script-src 'self').
            await page.wait_for_function("document.querySelector('[data-clock]').textContent.length === 19")
            await page.screenshot(path=str(tmp_path / "console-phone.png"), full_page=True)
            await page.get_by_role("button", name="退出").tap()
            await page.get_by_text("已退出登录").wait_for()
            await page.goto(stack.base + "/console")
            assert "/login?next=/console" in page.url
            assert errors == []
            await ctx.close()

            # A wall screen: larger type, same shell.
            ctx = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
            page = await ctx.new_page()
            await page.goto(stack.base + "/login?next=/console")
            await page.get_by_label("登录名").fill("zhangwei")
            await page.get_by_label("密码").fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await page.get_by_role("heading", name="您好，张伟").wait_for()
            size = await page.evaluate("getComputedStyle(document.documentElement).fontSize")
            assert size == "20px"
            await page.screenshot(path=str(tmp_path / "console-wall.png"))
            await ctx.close()

            # Wrong password until the account locks; then even the right one is refused.
            ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
            page = await ctx.new_page()
            await page.goto(stack.base + "/login")
            for i in range(failures):
                await page.get_by_label("登录名").fill("zhangwei")
                await page.get_by_label("密码").fill(f"wrong-password-{i}")
                await page.get_by_role("button", name="登录").click()
                alert = page.get_by_role("alert")
                await alert.wait_for()
                text = await alert.inner_text()
                assert ("登录名或密码错误" in text) == (i < failures - 1), (i, text)
            assert "登录失败次数过多" in text and "北京时间" in text
            await page.screenshot(path=str(tmp_path / "console-locked.png"))
            await page.get_by_label("登录名").fill("zhangwei")
            await page.get_by_label("密码").fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await page.get_by_role("alert").wait_for()
            assert "登录失败次数过多" in await page.get_by_role("alert").inner_text()
            assert page.url.endswith("/login")
            await ctx.close()
        finally:
            await browser.close()

    async with stack.engine.db.read() as s:
        kinds = [e.kind for e in (await s.exec(select(Event).where(Event.kind.startswith("log")))).all()]  # type: ignore[attr-defined]
    assert kinds.count("login") == 2 and kinds.count("logout") == 1
    assert kinds.count("login_failed") == failures and kinds.count("login_locked") == 1
    assert kinds.count("login_refused") == 1
