"""The duty officer's console in a real browser (Debian's headless Chromium via Playwright):
log in, open 预警列表, open the 叫应 board, and watch it update live as an official's SMS
reply arrives through the real webhook path (the Tencent Cloud SMS simulator's uplink
callback); let the ladder run out for the others until their calls reach the duty room, see
and hear the alarm, record "phoned and confirmed" with a note, and find it in the event log
under the officer's name. Screenshots of the board (wall screen and phone) are kept in the
test's tmp_path and their paths printed.

Needs `chromium` (apt) and `playwright` (pip). Without them the test is skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select

from support.browser import launch as browser_launch
from support.browser import require_browser
from support.phones import county, imminent
from support.users import PASSWORD, add_user
from warnd.db.models import Event

playwright_api = require_browser()


async def launch(p: Any) -> Any:
    return await browser_launch(p, "--autoplay-policy=no-user-gesture-required")


async def test_board_live_through_the_sms_webhook_and_the_duty_room_alarm(sqlite_url: str, tmp_path: Path) -> None:
    async with county(sqlite_url) as c:
        await add_user(c.app.db, "zhangwei", "duty_officer", display_name="张伟")
        alert_id = (await c.warn(imminent("BOARD-LIVE")))["id"]
        base = str(c.http.make_url("/")).rstrip("/")
        calls = await c.calls(alert_id)
        async with playwright_api.async_playwright() as p:
            browser = await launch(p)
            try:
                ctx = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
                page = await ctx.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(base + "/login")
                await page.get_by_label("登录名").fill("zhangwei")
                await page.get_by_label("密码").fill(PASSWORD)
                await page.get_by_role("button", name="登录").click()
                await page.get_by_role("heading", name="您好，张伟").wait_for()

                # 预警列表 → the warning → its board.
                await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="预警列表").click()
                row = page.locator(f'tr[data-alert="{alert_id}"]')
                await row.wait_for()
                assert "临灾预警" in await row.inner_text() and f"0 / {len(calls)}" in await row.inner_text()
                await row.get_by_role("link", name="叫应看板").click()
                await page.wait_for_url(f"**/console/alerts/{alert_id}")
                await page.locator('#board[data-live="on"]').wait_for()
                secretary = page.locator(f'#call-{calls["张书记"]["id"]}')
                assert await secretary.get_attribute("data-state") == "open"
                assert "剩" in await secretary.locator(".countdown").inner_text()

                # 张书记 answers by SMS: Tencent's uplink callback → webhook → the board, live.
                await c.phone("+8613900000001").expect_sms("临灾")
                assert await c.phone("+8613900000001").reply("1") == 200
                await page.locator(f'#call-{calls["张书记"]["id"]}[data-state="confirmed"]').wait_for()
                assert "短信回复" in await page.locator(f'#call-{calls["张书记"]["id"]}').inner_text()
                assert await page.locator('[data-count="confirmed"]').inner_text() == "1"

                # Nobody else answers: the ladder runs out and their calls reach the duty room.
                for _ in range(8):
                    await c.fast_forward(minutes=6)
                now = await c.calls(alert_id)
                assert now["李主任"]["state"] == "duty_room"
                head_id = now["李主任"]["id"]
                await page.locator(f'#call-{head_id}[data-state="duty_room"]').wait_for()
                bar = page.locator("#alarm-bar")
                await bar.locator('li[data-kind="duty_room"]').first.wait_for()
                assert "无人应答，已转县值班室" in await bar.inner_text()
                await page.wait_for_function("document.body.dataset.alarm === 'ringing'")
                await page.wait_for_function("Number(document.body.dataset.beeps || 0) >= 1")
                call_now = page.locator(".call-now")
                item = call_now.locator(f"#callnow-{head_id}")
                assert "李主任" in await item.inner_text()
                assert await item.locator('a.tel[href="tel:+8613900000002"]').count() == 1
                assert "替补 张书记" in await item.inner_text()
                shot = tmp_path / "board-wall.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"board screenshot (wall screen): {shot}")

                # Phoned and confirmed: a note is required; recorded under 张伟's name.
                await item.get_by_text("已电话确认").click()
                await item.get_by_label("备注").fill("电话联系李主任本人，已在组织转移")
                await item.get_by_role("button", name="登记为已应答").click()
                await page.get_by_text("已登记电话叫应").wait_for()
                await page.locator(f'#call-{head_id}[data-state="confirmed"]').wait_for()
                assert "值班员电话确认" in await page.locator(f"#call-{head_id}").inner_text()
                assert await page.locator(f"#callnow-{head_id}").count() == 0

                # Silencing the alarm stops the sound; the bar stays while calls wait.
                await page.get_by_role("button", name="知道了（静音）").click()
                await page.wait_for_function("document.body.dataset.alarm === 'quiet'")
                assert errors == []
                await ctx.close()

                # The same board on a phone: no sideways scrolling.
                ctx = await browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                                is_mobile=True, has_touch=True, locale="zh-CN")
                page = await ctx.new_page()
                await page.goto(f"{base}/login?next=/console/alerts/{alert_id}")
                await page.get_by_label("登录名").fill("zhangwei")
                await page.get_by_label("密码").fill(PASSWORD)
                await page.get_by_role("button", name="登录").tap()
                await page.locator('#board[data-live="on"]').wait_for()
                assert await page.evaluate("document.scrollingElement.scrollWidth") <= 360
                shot = tmp_path / "board-phone.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"board screenshot (phone): {shot}")
                await ctx.close()
            finally:
                await browser.close()

        async with c.app.db.read() as s:
            ev = (await s.exec(select(Event).where(Event.kind == "call_confirmed",
                                                   Event.call_id == head_id))).one()
        assert ev.data["actor"] == "zhangwei" and ev.data["via"] == "duty_officer"
        assert ev.data.get("note", "电话联系李主任本人，已在组织转移") == "电话联系李主任本人，已在组织转移"
