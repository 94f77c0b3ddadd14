"""What waits for a second person (the two-person rule): the list for the console's 待审核
page and `GET /api/v1/approvals`, and the count the board alarms on.

For the board: `await pending_count(db)` (how many wait) and `await approvals(db)` (the rows,
oldest first, as plain dicts) — both read-only; `approval_alarms(db)` is the board's alarm source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from warnd.core.domain import ApprovalState, Colour
from warnd.db.engine import Database
from warnd.db.models import Approval
from warnd.views.alarms import Alarm, AlarmSource

KIND_ZH = {"publish": "发布预警", "cancel": "解除预警"}
STATE_ZH = {"pending": "待审核", "approved": "已批准", "rejected": "已驳回", "failed": "批准后未能执行"}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def row_of(a: Approval) -> dict[str, Any]:
    return {
        "id": a.id, "kind": a.kind, "kind_zh": KIND_ZH.get(a.kind, a.kind), "state": a.state,
        "state_zh": STATE_ZH.get(a.state, a.state), "author": a.author, "author_display": a.author_display,
        "created_at": _iso(a.created_at), "alert_id": a.alert_id, "hazard": a.hazard, "colour": a.colour,
        "colour_zh": Colour(a.colour).zh if a.colour in set(Colour) else a.colour, "step": a.step,
        "headline": a.headline, "area": a.area_desc, "reason": a.reason, "summary": a.summary,
        "decided_by": a.decided_by, "decided_display": a.decided_display, "decided_at": _iso(a.decided_at),
        "note": a.decision_note, "result": a.result, "error": a.error,
    }


async def approvals(db: Database, state: ApprovalState | None = ApprovalState.PENDING,
                    limit: int = 200) -> list[dict[str, Any]]:
    """Approvals in `state` (None: every state, newest first); pending ones oldest first."""
    q = select(Approval)
    if state is not None:
        q = q.where(Approval.state == state.value)
    order = col(Approval.id) if state == ApprovalState.PENDING else col(Approval.id).desc()
    async with db.read() as s:
        rows = (await s.exec(q.order_by(order).limit(limit))).all()
    return [row_of(a) for a in rows]


async def approval(db: Database, approval_id: int) -> dict[str, Any] | None:
    async with db.read() as s:
        a = await s.get(Approval, approval_id)
    return row_of(a) if a is not None else None


async def pending_count(db: Database) -> int:
    """How many approvals wait: the board's alarm when above 0."""
    async with db.read() as s:
        return int((await s.exec(select(func.count()).select_from(Approval).where(
            Approval.state == ApprovalState.PENDING.value))).one())


def approval_alarms(db: Database) -> AlarmSource:
    """The board's alarm for every approval that waits (a warning or a cancel not yet out)."""

    async def waiting(now: datetime) -> list[Alarm]:
        return [Alarm(f"approval:{a['id']}", "approval_waiting", "warning",
                      f"{a['kind_zh']}待审核：{a['headline'] or a['area'] or ''}（{a['author_display'] or a['author']}提交）",
                      link=f"/console/approvals/{a['id']}", since=a["created_at"])
                for a in await approvals(db)]

    return waiting
