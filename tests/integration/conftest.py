"""Fixtures the integration tests share (a module's own `st` takes precedence)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.channel_stack import Stack, build_stack, stop_stack


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The real engine with its HTTP API and channels against local provider servers
    (support/channel_stack.py), on each database."""
    stack = await build_stack(db_url, tmp_path)
    try:
        yield stack
    finally:
        await stop_stack(stack)
