"""Playing an official who answers by link (demo, drills, tests): through real HTTP only."""

from __future__ import annotations

import re
from collections.abc import Sequence

import aiohttp

_FEEDBACK_ACTION = re.compile(r'action="\.\./f/([A-Za-z0-9_-]{32})"')


async def answer_link(session: aiohttp.ClientSession, link: str, *, actions: Sequence[str] = (),
                      people_moved: int = 0, note: str = "") -> bool:
    """Open `link` (…/c/<token>), tap 收到, then send 反馈 when any of actions / people_moved /
    note is given. True when the confirmation was accepted (and the feedback, if any)."""
    async with session.get(link) as r:
        if r.status != 200:
            return False
    async with session.post(link, data={"ok": "1"}) as r:
        page = await r.text()
        if r.status != 200:
            return False
    if not (actions or people_moved or note):
        return True
    found = _FEEDBACK_ACTION.search(page)
    if not found:
        return False
    form: list[tuple[str, str]] = [("action", a) for a in actions]
    form += [("people_moved", str(people_moved)), ("note", note)]
    base = link.rsplit("/c/", 1)[0]
    async with session.post(f"{base}/f/{found.group(1)}", data=form) as r:
        return r.status == 200
