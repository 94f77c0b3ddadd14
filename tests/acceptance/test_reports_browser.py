"""统计报表 in a real browser (Debian's headless Chromium via Playwright): an auditor logs in,
opens 统计报表 from the menu, picks the storm's real warning, sees the headline and the HTML
report in its frame (charts drawn, the officials who never confirmed, phones masked), and the
XLSX link downloads a workbook whose numbers are the storm's known answers.

Needs `chromium` (apt), `playwright` (pip; no browser download) and Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook

from support.audit_scenario import build_storm, play_storm, stop_storm
from support.browser import launch, require_browser
from support.speaker_support import mosquitto_available
from support.users import PASSWORD, add_user

playwright_api = require_browser()
pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="apt install mosquitto")


async def test_auditor_sees_the_report_and_downloads_the_xlsx(sqlite_url: str, tmp_path: Path) -> None:
    storm = await build_storm(sqlite_url, tmp_path)
    try:
        await play_storm(storm)
        await add_user(storm.engine.db, "shenji", "auditor", display_name="审计员")
        async with playwright_api.async_playwright() as p:
            browser = await launch(p)
            try:
                ctx = await browser.new_context(viewport={"width": 1440, "height": 1000}, locale="zh-CN",
                                                accept_downloads=True)
                page = await ctx.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(storm.base + "/login")
                await page.get_by_label("登录名").fill("shenji")
                await page.get_by_label("密码").fill(PASSWORD)
                await page.get_by_role("button", name="登录").click()
                await page.get_by_role("heading", name="您好，审计员").wait_for()

                await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="统计报表").click()
                await page.wait_for_url("**/console/reports")
                await page.get_by_label("一条预警").select_option(str(storm.real))
                await page.get_by_role("button", name="生成报表").click()
                await page.wait_for_url(f"**/console/reports?alert={storm.real}")
                line = page.locator("[data-headline]")
                assert await line.inner_text() == "实战 1期 23人次，覆盖率 75.0%（目标 95%，未达标）"

                # The report itself, in its frame: the same page `warnd report` writes.
                frame = page.frame_locator("iframe.report-frame")
                await frame.locator("h1").wait_for()
                assert await frame.locator("h1").inner_text() == "预警发布与叫应审计报告"
                assert await frame.locator("svg.chart").count() >= 3
                box = await frame.locator("svg.chart").first.bounding_box()
                assert box is not None and box["width"] > 300
                silent = frame.locator("#never_confirmed table")
                assert await silent.locator("tbody tr").count() == 2
                text = await silent.inner_text()
                assert "吴网格" in text and "139****0013" in text and "13900000013" not in text
                await page.screenshot(path=str(tmp_path / "reports.png"), full_page=True)
                print(f"reports page screenshot: {tmp_path / 'reports.png'}")

                # The XLSX link downloads the workbook.
                async with page.expect_download() as info:
                    await page.locator('a[data-format="xlsx"]').click()
                download = await info.value
                assert download.suggested_filename == f"warnd-report-alert-{storm.real}.xlsx"
                saved = tmp_path / download.suggested_filename
                await download.save_as(saved)
                assert errors == []
            finally:
                await browser.close()
    finally:
        await stop_storm(storm)

    wb = load_workbook(saved)
    issues = [[c.value for c in row] for row in wb["期数与人次"].iter_rows(min_row=2)]
    assert issues[0] == ["实战", "临灾预警(1h)", "短信", 1, 20, 9, 10, None, 21, 8, 1, 0]
    assert issues[-1] == ["实战", "合计", "合计", 1, 23, 9, 11, 2, 24, 8, 1, 0]
    cov = next(r for r in wb["概要"].iter_rows(min_row=2) if r[0].value == "覆盖率")
    assert (cov[1].value, cov[1].number_format) == (0.75, "0.0%")
