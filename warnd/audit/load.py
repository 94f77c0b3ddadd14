"""Reading the rows a report needs (thin: selects only; the numbers are warnd.audit.compute).

Scope: one warning, or a storm — every warning accepted (`alert_accepted` event) in
[start, end). A warning's loudspeaker-fallback companion alert comes with it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from warnd.audit.facts import USED_EVENTS
from warnd.audit.rows import (
    AlertRow,
    AuditInput,
    CallRow,
    DeliveryRow,
    EventRow,
    FeedbackRow,
    PersonRow,
    PublicTargetRow,
    RegionRow,
    Scope,
    SpeakerCheck,
    SpeakerCommandRow,
)
from warnd.db.engine import Database
from warnd.db.models import (
    Alert,
    Call,
    Delivery,
    Event,
    Feedback,
    Person,
    PublicTarget,
    Region,
    SpeakerCommand,
)

CHUNK = 500  # ids per IN (…) list
# Core tables: plain tuples of the columns a report needs, no ORM objects for 100,000 events.
_T: dict[type, Any] = {m: getattr(m, "__table__") for m in (  # noqa: B009 (mypy does not see __table__)
    Alert, Call, Delivery, Event, Feedback, Person, PublicTarget, Region, SpeakerCommand)}


class ScopeError(ValueError):
    """The scope names nothing reportable (unknown alert, a Cancel message, a bad window)."""


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i:i + CHUNK])


async def warning_ids(db: Database, scope: Scope) -> list[int]:
    """The accepted warnings a scope covers."""
    async with db.read() as s:
        if scope.alert_id is not None:
            alert = await s.get(Alert, scope.alert_id)
            if alert is None:
                raise ScopeError(f"no alert {scope.alert_id}")
            accepted = (await s.exec(select(Event.id).where(Event.kind == "alert_accepted",
                                                            Event.alert_id == scope.alert_id))).first()
            if accepted is not None:
                return [scope.alert_id]
            opened = (await s.exec(select(Event.data).where(Event.kind == "speaker_fallback_opened",
                                                            Event.alert_id == scope.alert_id))).first()
            if opened and isinstance(opened.get("for_alert"), int):
                raise ScopeError(f"alert {scope.alert_id} is the loudspeaker fallback of alert "
                                 f"{opened['for_alert']}: report on that one")
            raise ScopeError(f"alert {scope.alert_id} is a {alert.msg_type} message, not a disseminated "
                             "warning: report on the warning it refers to")
        if scope.start is None or scope.end is None or scope.end <= scope.start:
            raise ScopeError("a time window needs a start before its end")
        rows = (await s.exec(select(Event.alert_id).where(
            Event.kind == "alert_accepted", col(Event.at) >= scope.start, col(Event.at) < scope.end,
        ).order_by(col(Event.at), col(Event.id)))).all()
    return [a for a in rows if a is not None]


async def load_input(db: Database, scope: Scope, *, now: datetime,
                     role_labels: dict[str, str] | None = None) -> AuditInput:
    wids = await warning_ids(db, scope)
    inp = AuditInput(scope=scope, generated_at=now, role_labels=dict(role_labels or {}))
    async with db.read() as s:
        companions = [a for a, data in (await s.exec(select(Event.alert_id, Event.data).where(
            Event.kind == "speaker_fallback_opened"))).all()
            if a is not None and data.get("for_alert") in set(wids)]
        ids = sorted(set(wids) | set(companions))
        conn = await s.connection()

        async def rows(table: Any, names: str, where: Any = None) -> list[Any]:
            q = sa_select(*(table.c[n] for n in names.split()))
            return list((await conn.execute(q if where is None else q.where(where))).all())

        for chunk in _chunks(ids):
            inp.alerts += [AlertRow(*r) for r in await rows(
                _T[Alert], "id identifier status msg_type source hazard colour step headline received_at state",
                _T[Alert].c.id.in_(chunk))]
            inp.events += [EventRow(i, at, kind, aid, cid, did, pid, dict(data or {})) for i, at, kind, aid, cid, did,
                           pid, data in await rows(_T[Event], "id at kind alert_id call_id delivery_id person_id data",
                                                   _T[Event].c.alert_id.in_(chunk) & _T[Event].c.kind.in_(USED_EVENTS))]
            inp.calls += [CallRow(*r) for r in await rows(
                _T[Call], "id alert_id person_id step role region_code state level created_at note",
                _T[Call].c.alert_id.in_(chunk))]
            inp.deliveries += [DeliveryRow(*r) for r in await rows(
                _T[Delivery], "id alert_id call_id person_id channel purpose step rung sent_at",
                _T[Delivery].c.alert_id.in_(chunk))]
            inp.speaker_commands += [SpeakerCommandRow(*r) for r in await rows(
                _T[SpeakerCommand], "id cmd_id alert_id device_id village_code step state reason late fallback",
                _T[SpeakerCommand].c.alert_id.in_(chunk))]
            inp.public_targets += [PublicTargetRow(*r) for r in await rows(
                _T[PublicTarget], "alert_id village_code decision delivery_id", _T[PublicTarget].c.alert_id.in_(chunk))]
            inp.feedback += [FeedbackRow(*r) for r in await rows(
                _T[Feedback], "id call_id alert_id people_moved", _T[Feedback].c.alert_id.in_(chunk))]
        inp.regions = {r[0]: RegionRow(*r) for r in await rows(_T[Region], "code name level parent_code geometry_wkt")}
        inp.people = {r[0]: PersonRow(*r) for r in await rows(_T[Person], "id name phone role region_code")}
    inp.speaker_checks = await _speaker_checks(db, sorted({c.alert_id for c in inp.speaker_commands} & set(wids)))
    return inp


async def _speaker_checks(db: Database, alert_ids: list[int]) -> dict[int, SpeakerCheck]:
    """The loudspeaker module's own coverage count, to set beside the event count."""
    if not alert_ids:
        return {}
    from warnd.speakers.coverage import speaker_coverage

    out = {}
    for aid in alert_ids:
        cov: Any = await speaker_coverage(db, aid)
        out[aid] = SpeakerCheck(played=cov.played, villages=cov.villages, villages_reached=cov.villages_reached)
    return out
