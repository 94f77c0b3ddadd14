"""Console pages of the system's state: 告警 (`/console/alarms`, and the alarm bar every page
carries, live by `/console/alarms/stream`), 运行状况 (`/console/health`) and 汛前检查
(`/console/readiness`, the same check as `warnd check`).

Other parts add alarms by appending an `AlarmSource` to `web_app[ALARM_SOURCES]` (the
two-person approval rule: an approval waiting), see warnd/views/alarms.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

from aiohttp import web

from warnd.api.auth import Rule
from warnd.app import App
from warnd.console import live
from warnd.console.render import render
from warnd.views.alarms import Alarm, AlarmSource, all_alarms
from warnd.views.health import feeds_view, provider_health, speaker_fleet
from warnd.views.readiness import STATUS_ZH, Names, check_readiness, readiness_json

ALARM_SOURCES = web.AppKey("console_alarm_sources", list[AlarmSource])


async def current_alarms(engine: App, request: web.Request) -> list[Alarm]:
    extra: list[AlarmSource] = request.app[ALARM_SOURCES]
    return await all_alarms(engine.db, engine.clock.now(), engine.roles, await engine.feeds.health(), extra)


async def alarms_frame(engine: App, request: web.Request) -> tuple[str, str]:
    """The `alarms` event of a live stream (the alarm bar of every page reads it)."""
    return "alarms", json.dumps([a.as_json() for a in await current_alarms(engine, request)], ensure_ascii=False)


def routes(engine: App) -> list[tuple[web.RouteDef, Rule]]:
    stale_after = timedelta(seconds=engine.settings.speakers.stale_after_seconds)

    async def alarms(request: web.Request) -> list[Alarm]:
        return await current_alarms(engine, request)

    async def alarms_page(request: web.Request) -> web.StreamResponse:
        return render(request, "alarms.html", title="告警", alarms=await alarms(request))

    async def alarms_stream(request: web.Request) -> web.StreamResponse:
        async def frames() -> list[tuple[str, str]]:
            return [await alarms_frame(engine, request)]

        return await live.stream(request, engine.db, frames)

    async def health_page(request: web.Request) -> web.StreamResponse:
        now = engine.clock.now()
        feeds = feeds_view(await engine.feeds.health(), now)
        return render(request, "health.html", title="运行状况", feeds=feeds["feeds"], stations=feeds["stations"],
                      fleet=await speaker_fleet(engine.db, now, stale_after),
                      speakers_enabled=engine.speakers is not None,
                      providers=await provider_health(engine.db, now))

    async def readiness_page(request: web.Request) -> web.StreamResponse:
        sources = {name: (src.kind, src.interval_seconds) for name, src in engine.feeds.sources.by_name.items()
                   if src.enabled}
        result, inp = await check_readiness(engine.db, engine.policy, engine.clock.now(),
                                            speaker_stale_after=stale_after, sources=sources)
        data = readiness_json(result, Names(inp.regions, engine.roles))
        groups: dict[str, dict[str, object]] = {}
        for f in data["findings"]:
            g = groups.setdefault(f"{f['severity']}:{f['code']}", {
                "severity": f["severity"], "title": f["title"], "meaning": f["meaning"], "findings": []})
            g["findings"].append(f)  # type: ignore[attr-defined]
        order = {"error": 0, "warning": 1, "info": 2}
        return render(request, "readiness.html", title="汛前检查", data=data, status_zh=STATUS_ZH[result.status],
                      groups=sorted(groups.values(), key=lambda g: order.get(str(g["severity"]), 3)))

    return [
        (web.get("/console/alarms", alarms_page, name="console_alarms"), "console.view"),
        (web.get("/console/alarms/stream", alarms_stream, name="console_alarms_stream",
                 allow_head=False), "console.view"),
        (web.get("/console/health", health_page, name="console_health"), "feeds.read"),
        (web.get("/console/readiness", readiness_page, name="console_readiness"), "console.view"),
    ]
