"""The list of warnings (预警列表, `GET /api/v1/alerts`): filters, one page, and the counts of
each warning on it (calls, deliveries, loudspeakers).

Filters are on the warning's own `sent` time, in Beijing dates as the duty room speaks them.
Real warnings (CAP status Actual) and drills (Exercise, Test, System, Draft) are kept apart by
the `kind` filter. The township filter matches a warning covering any place in the township
(region codes are hierarchical: a village's code starts with its township's).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from warnd.core.domain import AlertStatus, CallState, Level
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Region, SpeakerCommand

BEIJING = timedelta(hours=8)
KINDS = ("all", "real", "drill")
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
TOWNSHIP_LEN = Level.TOWNSHIP.code_length

STEP_ZH = {"forecast": "预报", "warning": "预警", "imminent": "临灾预警"}
COLOUR_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
STATE_ZH = {"active": "生效中", "superseded": "已更新", "cancelled": "已解除", "expired": "已过期",
            "out_of_area": "不在本县"}
STATUS_ZH = {"Actual": "真实", "Exercise": "演练", "Test": "测试", "System": "系统", "Draft": "草稿"}


class FilterError(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


@dataclass(frozen=True)
class AlertFilter:
    day_from: date | None = None  # Beijing dates, inclusive
    day_to: date | None = None
    township: str | None = None
    kind: str = "all"  # all | real | drill
    state: str | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def parse(cls, query: Mapping[str, str], *, default_kind: str = "all") -> AlertFilter:
        """From query parameters; FilterError names the parameter that is wrong."""
        def day(name: str) -> date | None:
            v = query.get(name, "").strip()
            if not v:
                return None
            try:
                return date.fromisoformat(v)
            except ValueError:
                raise FilterError(name, f"{name} must be a date YYYY-MM-DD (Beijing), got {v[:40]!r}") from None

        def number(name: str, default: int, low: int, high: int) -> int:
            v = query.get(name, "").strip()
            if not v:
                return default
            if not v.isascii() or not v.isdigit() or not low <= int(v) <= high:
                raise FilterError(name, f"{name} must be a whole number from {low} to {high}")
            return int(v)

        kind = query.get("kind", "").strip() or default_kind
        if kind not in KINDS:
            raise FilterError("kind", f"kind must be one of {', '.join(KINDS)}")
        state = query.get("state", "").strip() or None
        if state is not None and state not in STATE_ZH:
            raise FilterError("state", f"state must be one of {', '.join(STATE_ZH)}")
        township = query.get("township", "").strip() or None
        if township is not None and (len(township) != TOWNSHIP_LEN or not township.isascii()
                                     or not township.isdigit()):
            raise FilterError("township", f"township must be a {TOWNSHIP_LEN}-digit township code")
        f = cls(day("from"), day("to"), township, kind, state,
                number("page", 1, 1, 1_000_000), number("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE))
        if f.day_from and f.day_to and f.day_from > f.day_to:
            raise FilterError("from", "from is after to")
        return f

    def query(self, **change: Any) -> dict[str, str]:
        """These filters as query parameters (for links to other pages of the list)."""
        out = {"from": self.day_from.isoformat() if self.day_from else "",
               "to": self.day_to.isoformat() if self.day_to else "", "township": self.township or "",
               "kind": self.kind, "state": self.state or "", "page": str(self.page),
               "per_page": str(self.per_page)}
        out.update({k: str(v) for k, v in change.items()})
        return {k: v for k, v in out.items() if v and not (k == "per_page" and v == str(DEFAULT_PER_PAGE))}


def _start_of(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC) - BEIJING


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _covers(codes: Sequence[Any], township: str) -> bool:
    return any(isinstance(c, str) and (c.startswith(township) or township.startswith(c)) for c in codes)


async def townships(db: Database) -> list[dict[str, str]]:
    async with db.read() as s:
        rows = (await s.exec(select(Region.code, Region.name).where(Region.level == Level.TOWNSHIP).order_by(
            col(Region.code)))).all()
    return [{"code": c, "name": n} for c, n in rows]


async def list_alerts(db: Database, f: AlertFilter, now: datetime, hazard_label: Any = None) -> dict[str, Any]:
    """One page of warnings, newest first, with their counts; `total` counts every match."""
    where: list[Any] = []
    if f.day_from:
        where.append(Alert.sent >= _start_of(f.day_from))
    if f.day_to:
        where.append(Alert.sent < _start_of(f.day_to + timedelta(days=1)))
    if f.kind == "real":
        where.append(Alert.status == AlertStatus.ACTUAL)
    elif f.kind == "drill":
        where.append(Alert.status != AlertStatus.ACTUAL)
    if f.state:
        where.append(Alert.state == f.state)
    q = select(Alert.id).where(*where)
    newest_first = (col(Alert.sent).desc(), col(Alert.id).desc())
    async with db.read() as s:
        if f.township is None:  # counted and paged by the database
            total = int((await s.exec(select(func.count()).select_from(q.subquery()))).one())
            page_ids = [i for i in (await s.exec(q.order_by(*newest_first).offset(
                (f.page - 1) * f.per_page).limit(f.per_page))).all() if i is not None]
        else:  # covered codes are a JSON list: matched here (only the filtered rows' codes are read)
            matches = (await s.exec(select(Alert.id, Alert.region_codes).where(*where).order_by(*newest_first))).all()
            ids = [i for i, codes in matches if i is not None and _covers(codes, f.township)]
            total = len(ids)
            page_ids = ids[(f.page - 1) * f.per_page: f.page * f.per_page]
        alerts = {a.id: a for a in (await s.exec(select(Alert).where(col(Alert.id).in_(page_ids)))).all()}
        calls = (await s.exec(select(Call.alert_id, Call.state, Call.deadline).where(
            col(Call.alert_id).in_(page_ids)))).all()
        deliveries = (await s.exec(select(Delivery.alert_id, Delivery.state, func.count()).where(
            col(Delivery.alert_id).in_(page_ids)).group_by(col(Delivery.alert_id), col(Delivery.state)))).all()
        speakers = (await s.exec(select(SpeakerCommand.alert_id, SpeakerCommand.state, func.count()).where(
            col(SpeakerCommand.alert_id).in_(page_ids)).group_by(
            col(SpeakerCommand.alert_id), col(SpeakerCommand.state)))).all()
        names = dict((await s.exec(select(Region.code, Region.name).where(
            Region.level == Level.TOWNSHIP))).all())
    call_counts: dict[int, Counter[str]] = defaultdict(Counter)
    for alert_id, state, deadline in calls:
        c = call_counts[alert_id]
        c["called"] += 1
        c[state] += 1
        if state == CallState.OPEN and deadline is not None and deadline < now:
            c["overdue"] += 1
    sends: dict[int, Counter[str]] = defaultdict(Counter)
    for d_alert, d_state, n in deliveries:
        sends[d_alert or 0][d_state] += n
    plays: dict[int, Counter[str]] = defaultdict(Counter)
    for s_alert, s_state, m in speakers:
        plays[s_alert][s_state] += m
    items = [row(alerts[i], call_counts[i], sends[i], plays[i], names, hazard_label)
             for i in page_ids if i in alerts]
    pages = max(1, -(-total // f.per_page))
    return {"alerts": items, "total": total, "page": f.page, "per_page": f.per_page, "pages": pages,
            "filters": {"from": f.day_from.isoformat() if f.day_from else None,
                        "to": f.day_to.isoformat() if f.day_to else None, "township": f.township,
                        "kind": f.kind, "state": f.state}}


def row(a: Alert, calls: Counter[str], sends: Counter[str], plays: Counter[str], township_names: Mapping[str, str],
        hazard_label: Any = None) -> dict[str, Any]:
    towns = sorted({c[:TOWNSHIP_LEN] for c in a.region_codes if isinstance(c, str) and len(c) >= TOWNSHIP_LEN})
    return {
        "id": a.id, "identifier": a.identifier, "sender": a.sender, "sender_name": a.sender_name,
        "source": a.source, "status": a.status, "real": a.status == AlertStatus.ACTUAL,
        "status_zh": STATUS_ZH.get(a.status, a.status), "state": a.state, "state_zh": STATE_ZH.get(a.state, a.state),
        "step": a.step, "step_zh": STEP_ZH.get(a.step, a.step), "colour": a.colour,
        "colour_zh": COLOUR_ZH.get(a.colour, a.colour), "hazard": a.hazard,
        "hazard_zh": hazard_label(a.hazard) if hazard_label else a.hazard, "headline": a.headline,
        "sent": _iso(a.sent), "expires": _iso(a.expires), "received_at": _iso(a.received_at),
        "fallback_for": a.fallback_for_id, "supersedes": a.supersedes_id,
        "townships": [{"code": t, "name": township_names.get(t, t)} for t in towns],
        "counts": {
            "called": calls["called"], "confirmed": calls[CallState.CONFIRMED], "open": calls[CallState.OPEN],
            "overdue": calls["overdue"], "duty_room": calls[CallState.DUTY_ROOM],
            "cancelled": calls[CallState.CANCELLED],
            "messages": sum(sends.values()), "delivered": sends["delivered"],
            "failed": sends["failed"], "pending": sends["pending"] + sends["sending"],
            "speakers": sum(plays.values()), "speakers_played": plays["played"],
        },
    }
