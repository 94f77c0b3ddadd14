"""The console's navigation. An entry shows when its route is registered (by name) and the
user's role holds its permission, so a page appears in the menu the day it is added."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavEntry:
    label: str
    route: str  # aiohttp route name
    permission: str


NAV = (
    NavEntry("值班台", "console_home", "console.view"),
    NavEntry("预警列表", "console_alerts", "alerts.read"),
    NavEntry("发布预警", "console_compose", "alerts.compose"),
    NavEntry("待审核", "console_approvals", "console.view"),
    NavEntry("叫应看板", "console_board", "calls.read"),
    NavEntry("告警", "console_alarms", "console.view"),
    NavEntry("运行状况", "console_health", "feeds.read"),
    NavEntry("汛前检查", "console_readiness", "console.view"),
    NavEntry("统计报表", "console_reports", "reports.read"),
)
