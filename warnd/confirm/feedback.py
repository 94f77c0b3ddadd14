"""反馈 queries: per call (duty-room API) and people moved per township (summaries, demo)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlmodel import col, select

from warnd.confirm.pages import ACTIONS
from warnd.core.domain import Level
from warnd.db.engine import Database
from warnd.db.models import Feedback, Region

TOWNSHIP_CODE_LEN = Level.TOWNSHIP.code_length  # 9


async def feedback_by_call(db: Database, alert_id: int) -> dict[int, list[dict[str, Any]]]:
    """Every 反馈 of an alert's calls, oldest first, keyed by call id."""
    async with db.session() as s:
        rows = (await s.exec(select(Feedback).where(Feedback.alert_id == alert_id).order_by(
            col(Feedback.created_at), col(Feedback.id)))).all()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for f in rows:
        out[f.call_id].append({
            "actions": list(f.actions), "actions_zh": [ACTIONS.get(a, a) for a in f.actions],
            "people_moved": f.people_moved, "note": f.note, "by": f.person_id, "via": f.via,
            "at": f.created_at.isoformat(),
        })
    return dict(out)


async def people_moved_by_township(db: Database, alert_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """People moved (转移人数) per township, summed over 反馈 of the given alerts (all when
    None). One row per township that reported: code, name, people_moved, reports (how many
    反馈), calls (how many calls have at least one), actions (count per action code)."""
    q = select(Feedback)
    if alert_ids is not None:
        q = q.where(col(Feedback.alert_id).in_(list(alert_ids)))
    async with db.session() as s:
        rows = (await s.exec(q)).all()
        names = dict((await s.exec(select(Region.code, Region.name))).all())
    acc: dict[str, dict[str, Any]] = {}
    for f in rows:
        code = f.region_code[:TOWNSHIP_CODE_LEN] if len(f.region_code) >= TOWNSHIP_CODE_LEN else f.region_code
        t = acc.setdefault(code, {"code": code, "name": names.get(code, code), "people_moved": 0,
                                  "reports": 0, "calls": set(), "actions": defaultdict(int)})
        t["people_moved"] += f.people_moved
        t["reports"] += 1
        t["calls"].add(f.call_id)
        for a in f.actions:
            t["actions"][a] += 1
    return [{**t, "calls": len(t["calls"]), "actions": dict(t["actions"])}
            for t in sorted(acc.values(), key=lambda t: t["code"])]
