"""Headless Debian Chromium driven by Playwright, for the browser tests in tests/acceptance/.

`require_browser()` at a test module's top skips the module, with the reason shown, when
`playwright` (pip; its bundled driver, no browser download) or `chromium` (apt) is missing."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--no-first-run"]


def require_browser() -> ModuleType:
    api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("apt install chromium (Debian's headless Chromium)", allow_module_level=True)
    return api


async def launch(p: Any, *extra: str) -> Any:
    """Chromium from a started `async_playwright()`; `extra`: more command-line switches."""
    return await p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra])
