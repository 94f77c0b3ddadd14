"""A screenshot of the 叫应 board during the demo: Debian's headless Chromium (via Playwright)
logs in as the demo's duty officer, opens the board of the imminent warning mid-storm and saves
it as `board.png` in the demo's output folder.

Optional: without `chromium` (apt) or `playwright` (pip) the demo says so in one line and goes on.
The browser runs beside the storm (it waits on the demo clock), so the storm does not wait for it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from warnd.auth.service import AuthService
from warnd.clock import Clock
from warnd.config import AuthCfg
from warnd.db.engine import Database

OFFICER, OFFICER_NAME = "demo-duty", "值班员（演示）"
VIEWPORT = {"width": 1920, "height": 1080}  # a duty-room wall screen
BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--mute-audio"]
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    return shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)


def unavailable() -> str | None:
    """Why no screenshot can be taken here (None: it can)."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return "Debian's chromium is not installed (apt install chromium fonts-noto-cjk)"
    return None


class BoardCamera:
    """Start it early (browser up, logged in), then `shoot` when the storm is at its height."""

    def __init__(self, base: str, password: str):
        self.base, self.password = base, password
        self._pw: Any = None
        self._browser: Any = None
        self._page: Any = None

    @staticmethod
    async def add_officer(db: Database, password: str) -> None:
        await AuthService(db, AuthCfg()).add_user(OFFICER, "duty_officer", password, OFFICER_NAME, actor="demo")

    async def open(self) -> None:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        ctx = await self._browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
        ctx.set_default_timeout(TIMEOUT_MS)
        self._page = page = await ctx.new_page()
        await page.goto(f"{self.base}/login")
        await page.get_by_label("登录名").fill(OFFICER)
        await page.get_by_label("密码").fill(self.password)
        await page.get_by_role("button", name="登录").click()
        await page.get_by_role("heading", name=f"您好，{OFFICER_NAME}").wait_for()

    async def shoot(self, alert_id: int, path: Path) -> Path:
        """The board as the duty room sees it when it opens. Its live stream is not opened: the
        page already holds the board, and a county-wide warning's board (3,000+ officials) is
        seconds of work for the server in the storm's busiest minutes each time it is rendered."""
        page = self._page
        await page.route("**/console/alerts/*/stream*", lambda route: route.abort())
        await page.goto(f"{self.base}/console/alerts/{alert_id}", wait_until="load")
        await page.locator("#board .countdown, #board").first.wait_for()
        await page.screenshot(path=str(path))
        return path

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()


async def board_screenshot(camera: BoardCamera, clock: Clock, alert: asyncio.Future[tuple[int, datetime]],
                           path: Path) -> Path:
    """Open the browser now, wait for the warning (its id, and when on the demo clock to look at
    its board), shoot, close."""
    try:
        await camera.open()
        alert_id, at = await alert
        await clock.wait_until(at)
        return await camera.shoot(alert_id, path)
    finally:
        await camera.close()
