"""The HTML audit report of a real storm, opened from disk in Debian's headless Chromium with
the network cut: every chart renders (SVG drawn, with size), the tables are there, and the
page asks for nothing beyond its own file.

Needs `chromium` (apt), `playwright` (pip; no browser download) and Mosquitto."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from support.audit_scenario import T0, build_storm, play_storm, stop_storm
from support.browser import launch, require_browser
from support.speaker_support import mosquitto_available
from warnd.audit import Scope, make_report
from warnd.audit.export import write_report

playwright_api = require_browser()
pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="apt install mosquitto")


async def test_html_report_renders_its_charts_offline(sqlite_url: str, tmp_path: Path) -> None:
    storm = await build_storm(sqlite_url, tmp_path)
    try:
        await play_storm(storm)
        report = await make_report(storm.engine.db, Scope(start=T0, end=T0 + timedelta(hours=1)),
                                   now=storm.clock.now())
    finally:
        await stop_storm(storm)
    page_path = write_report(report, tmp_path / "out", ["html"])["html"]
    url = page_path.as_uri()

    async with playwright_api.async_playwright() as p:
        browser = await launch(p)
        try:
            ctx = await browser.new_context(offline=True, viewport={"width": 1280, "height": 900}, locale="zh-CN")
            requested: list[str] = []

            async def guard(route: playwright_api.Route) -> None:
                requested.append(route.request.url)
                if route.request.url == url:
                    await route.continue_()
                else:
                    await route.abort()  # would have gone out: recorded, and the test fails below

            await ctx.route("**/*", guard)
            page = await ctx.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            await page.goto(url)
            await page.wait_for_load_state("load")

            assert requested == [url], requested  # nothing but the file itself
            assert problems == []
            assert await page.title() == "预警发布与叫应审计报告"
            # Real: progress, time to confirm, coverage per township; drill the same; the map.
            charts = page.locator("svg.chart")
            assert await charts.count() == 7
            for i in range(7):
                box = await charts.nth(i).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 50
            lines = page.locator("svg.timeline path.line")
            assert await lines.count() == 2  # one step each for real and drill
            assert [await lines.nth(i).get_attribute("data-step") for i in range(2)] == ["imminent", "warning"]
            assert await page.locator("svg.histogram rect.bar").count() == 2 * 8  # 8 bins, one step each
            bars = page.locator("svg.coverage rect.bar")
            assert await bars.count() == 3  # 官庄镇, 马底驿镇 (real); 官庄镇 (drill)
            assert await page.locator("svg.coverage line.target").count() == 2
            villages = page.locator("svg.map .village")
            statuses = {await villages.nth(i).get_attribute("data-code"): await villages.nth(i).get_attribute("data-status")
                        for i in range(await villages.count())}
            assert statuses == {"431222100200": "confirmed", "431222100201": "reached", "431222101200": "reached",
                                "431222101201": "not_targeted", "431222101202": "not_reached"}
            # The tables are on the page, the officials who never confirmed by name.
            silent = page.locator("#never_confirmed table")
            assert await silent.locator("tbody tr").count() == 2
            assert "吴网格" in await silent.inner_text() and "139****0013" in await silent.inner_text()
            assert await page.locator("#issues tbody tr").count() == 8
            await page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            await browser.close()
