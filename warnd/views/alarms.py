"""The duty room's alarms: what must be seen and heard now.

- a call reached the duty room (the ladder ran out, nobody answered): one alarm per official;
- sends fail: a provider that refused every message of the recent window is critical (and a
  `provider_failing` notice in the event log is too), a few failures are a warning;
- a source went stale or is failing;
- an approval waits — from whatever registers an `AlarmSource` (the compose/approval part
  plugs one in; see warnd/api/app.py ALARM_SOURCES).

Each alarm has a stable `key`: the console sounds once per new key and lets the officer
silence the ones already seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from warnd.core.domain import AlertState, CallState
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Event, Person, Region
from warnd.views.health import provider_health

NOTICE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Alarm:
    key: str
    kind: str  # duty_room | provider_failing | send_failures | source_stale | approval_waiting | ...
    level: str  # critical | warning
    text: str  # one line of Chinese
    link: str | None = None
    since: str | None = None  # ISO time

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


AlarmSource = Callable[[datetime], Awaitable[list[Alarm]]]
"""Anything else that must alarm (e.g. approvals waiting): called on every refresh."""


async def duty_room_alarms(db: Database, roles: Roles) -> list[Alarm]:
    async with db.read() as s:
        rows = (await s.exec(select(Call, Person.name).join(Person, Person.id == Call.person_id).join(  # type: ignore[arg-type]
            Alert, Alert.id == Call.alert_id).where(  # type: ignore[arg-type]
            Call.state == CallState.DUTY_ROOM, Alert.state == AlertState.ACTIVE).order_by(col(Call.id)))).all()
        codes = {c.region_code for c, _ in rows}
        names: dict[str, str] = dict((await s.exec(select(Region.code, Region.name).where(
            col(Region.code).in_(codes)))).all()) if codes else {}
        since: dict[int | None, datetime] = dict((await s.exec(select(Event.call_id, Event.at).where(
            Event.kind == "call_to_duty_room", col(Event.call_id).in_([c.id for c, _ in rows])))).all()) if rows else {}
    out = []
    for call, name in rows:
        at = since.get(call.id)
        place = names.get(call.region_code, call.region_code)
        out.append(Alarm(f"duty_room:{call.id}", "duty_room", "critical",
                         f"{place} · {roles.label(call.role)} {name} 无人应答，已转县值班室，请立即电话叫应",
                         f"/console/alerts/{call.alert_id}#call-{call.id}", at.isoformat() if at else None))
    return out


async def send_alarms(db: Database, now: datetime) -> list[Alarm]:
    out = []
    for p in await provider_health(db, now):
        name = p["channel_zh"] + (f"（{p['provider']}）" if p["provider"] else "")
        if p["failing"]:
            out.append(Alarm(f"provider_failing:{p['channel']}", "provider_failing", "critical",
                             f"{name}平台拒绝了最近{p['window_minutes']}分钟内的全部{p['failed']}条消息："
                             f"{p['last_error'] or '原因不明'}", "/console/health", p["last_error_at"]))
        elif p["failed"]:
            out.append(Alarm(f"send_failures:{p['channel']}", "send_failures", "warning",
                             f"{name}最近{p['window_minutes']}分钟有{p['failed']}条消息发送失败："
                             f"{p['last_error'] or '原因不明'}", "/console/health", p["last_error_at"]))
    async with db.read() as s:
        notices = (await s.exec(select(Event).where(Event.kind == "provider_failing",
                                                    Event.at >= now - NOTICE_WINDOW).order_by(
            col(Event.id).desc()).limit(20))).all()
    seen = {a.key for a in out}
    for e in notices:
        key = f"provider_failing:{e.data.get('provider') or e.data.get('for_channel') or e.data.get('channel') or e.id}"
        if key in seen:
            continue
        seen.add(key)
        out.append(Alarm(key, "provider_failing", "critical", str(e.data.get("details") or "短信平台连续拒绝发送"),
                         "/console/health", e.at.isoformat()))
    return out


def source_alarms(feeds: Sequence[dict[str, Any]]) -> list[Alarm]:
    out = []
    for f in feeds:
        # Station rows (MQTT telemetry, the SL 651 gateway) carry their stations' ages, not a
        # source status: their lag has its own metric and rule.
        status = f.get("status")
        if status is None or not f.get("enabled", True):
            continue
        if status == "stale":
            out.append(Alarm(f"source_stale:{f['name']}", "source_stale", "critical",
                             f"信息源 {f['name']} 长时间没有更新，可能已中断", "/console/health",
                             f.get("last_success_at")))
        elif status == "failing":
            out.append(Alarm(f"source_failing:{f['name']}", "source_failing", "critical",
                             f"信息源 {f['name']} 获取失败（连续{f.get('consecutive_failures', 0)}次）："
                             f"{f.get('last_error') or ''}", "/console/health", f.get("last_error_at")))
    return out


async def all_alarms(db: Database, now: datetime, roles: Roles, feeds: Sequence[dict[str, Any]],
                     extra: Sequence[AlarmSource] = ()) -> list[Alarm]:
    alarms = await duty_room_alarms(db, roles) + await send_alarms(db, now) + source_alarms(feeds)
    for source in extra:
        alarms += await source(now)
    return sorted(alarms, key=lambda a: (a.level != "critical", a.kind, a.key))
