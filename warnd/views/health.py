"""运行状况: feeds and telemetry stations (last reading, stale), the loudspeaker fleet (online,
stale, never seen, by village name), and the message providers (recent sends and errors).

Feed rows come from FeedService.health() (the same as GET /api/v1/feeds); the rest is read
here. Providers are judged over a recent window of the outbox: a provider that failed every
message of the window is `failing` — the board's alarm reads the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from warnd.core.speakers import darkness
from warnd.db.engine import Database
from warnd.db.models import Delivery, Region, Speaker
from warnd.views.callboard import CHANNEL_ZH

PROVIDER_WINDOW = timedelta(minutes=30)
STATION_STALE = timedelta(hours=1)  # no reading for this long: the station is shown stale
FEED_STATUS_ZH = {"ok": "正常", "failing": "出错", "stale": "长时间无更新", "never": "从未成功"}
DARK_ZH = {"never_seen": "从未上线", "offline": "离线", "stale": "心跳超时"}


def feeds_view(rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    feeds, stations = [], []
    for r in rows:
        if r.get("kind") == "telemetry_stations":
            for st in r.get("stations", []):
                since = st.get("seconds_since_reading")
                stations.append({**st, "stale": since is None or since > STATION_STALE.total_seconds()})
            continue
        feeds.append({**r, "status_zh": FEED_STATUS_ZH.get(r["status"], r["status"]),
                      "bad": r["status"] in ("failing", "stale")})
    return {"feeds": feeds, "stations": stations}


async def provider_health(db: Database, now: datetime, window: timedelta = PROVIDER_WINDOW) -> list[dict[str, Any]]:
    """Per channel (and provider) over the window: sends, delivered, failed, the last error.
    `failing`: every message that got an answer in the window was refused."""
    since = now - window
    async with db.read() as s:
        counts = (await s.exec(select(Delivery.channel, Delivery.state, func.count()).where(
            Delivery.created_at >= since).group_by(col(Delivery.channel), col(Delivery.state)))).all()
        errors = (await s.exec(select(Delivery.channel, Delivery.provider, Delivery.last_error,
                                      Delivery.created_at).where(
            Delivery.created_at >= since, Delivery.state == "failed").order_by(
            col(Delivery.created_at).desc(), col(Delivery.id).desc()).limit(200))).all()
    by: dict[str, dict[str, Any]] = defaultdict(lambda: {"sent": 0, "delivered": 0, "failed": 0, "pending": 0})
    for channel, state, n in counts:
        row = by[channel]
        if state in ("sent", "delivered", "failed"):
            row[state] += n
        elif state in ("pending", "sending"):
            row["pending"] += n
    last: dict[str, tuple[str | None, str | None, datetime | None]] = {}
    for channel, provider, error, at in errors:
        last.setdefault(channel, (provider, error, at))
    out = []
    for channel in sorted(by):
        row = by[channel]
        provider, error, err_at = last.get(channel, (None, None, None))
        answered = row["sent"] + row["delivered"] + row["failed"]
        out.append({"channel": channel, "channel_zh": CHANNEL_ZH.get(channel, channel), "provider": provider,
                    **row, "last_error": error, "last_error_at": err_at.isoformat() if err_at else None,
                    "failing": row["failed"] > 0 and row["failed"] == answered,
                    "window_minutes": int(window.total_seconds() // 60)})
    return out


async def speaker_fleet(db: Database, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    async with db.read() as s:
        speakers = (await s.exec(select(Speaker).where(Speaker.active == True).order_by(  # noqa: E712
            col(Speaker.region_code), col(Speaker.device_id)))).all()
        names = dict((await s.exec(select(Region.code, Region.name))).all())
    counts = {"total": 0, "online": 0, "offline": 0, "stale": 0, "never_seen": 0}
    dark = []
    for sp in speakers:
        counts["total"] += 1
        why = darkness(sp.online, sp.last_seen_at, now, stale_after)
        counts[why or "online"] += 1
        if why is not None:
            village = sp.region_code[:12]
            place = names.get(village, village)
            if len(sp.region_code) > 12:
                place = f"{place}·{names.get(sp.region_code, sp.region_code)}"
            dark.append({"device_id": sp.device_id, "place": place, "why": why, "why_zh": DARK_ZH[why],
                         "last_seen_at": sp.last_seen_at.isoformat() if sp.last_seen_at else None})
    return {**counts, "dark": dark}
