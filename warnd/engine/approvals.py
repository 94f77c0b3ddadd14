"""The two-person rule: the one owner of the `approvals` table's transitions.

    pending ──approve (an approver other than the author)──► approved ──(ingest refused)──► failed
    pending ──reject──► rejected

A red or imminent warning composed by hand (the console's 发布预警) and every cancel a person
asks for wait here. The composed warning is stored as the exact CAP document its author
saw; approving it puts that document through the same ingest as any feed, under the
author's name with the approver's beside it (`alert_accepted`: actor, approved_by). A
cancel approved lifts the warning the same way (`alert_cancelled`: actor, approved_by).
Every transition is a compare-and-swap on the state and is written to the event log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from warnd.clock import Clock
from warnd.core.domain import AlertState, ApprovalKind, ApprovalState
from warnd.db.engine import Database
from warnd.db.models import Alert, Approval
from warnd.engine import events
from warnd.engine.ingest import IngestError, Ingestor, IngestResult

T = Approval.__table__  # type: ignore[attr-defined]


class ApprovalError(Exception):
    """Refused: rendered as problem+json (API) or a message on the page (console)."""

    def __init__(self, status: int, title: str, detail: str, zh: str):
        super().__init__(detail)
        self.status, self.title, self.detail, self.zh = status, title, detail, zh


@dataclass(frozen=True)
class Person:
    """Who acts: the login name (the event log's actor) and the name shown to people."""

    name: str
    display: str = ""


@dataclass(frozen=True)
class Decision:
    approval_id: int
    state: ApprovalState
    alert_id: int | None
    result: IngestResult | None = None
    error: str | None = None


class Approvals:
    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.ingestor, self.on_change = db, clock, ingestor, on_change

    async def request_publish(self, cap_xml: bytes, author: Person, *, hazard: str, colour: str, step: str,
                              headline: str, area_desc: str, summary: dict[str, Any]) -> int:
        """Hold a composed warning for a second person. Returns the approval's id."""
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            row = Approval(kind=ApprovalKind.PUBLISH.value, author=author.name, author_display=author.display,
                           created_at=now, hazard=hazard, colour=colour, step=step, headline=headline,
                           area_desc=area_desc, cap_xml=cap_xml.decode("utf-8"), summary=summary)
            s.add(row)
            await s.flush()
            assert row.id is not None
            events.record(s, now, "approval_requested", approval_id=row.id, approval_kind=row.kind, actor=author.name,
                          colour=colour, step=step, headline=headline)
        self.on_change()
        return row.id

    async def request_cancel(self, alert_id: int, reason: str, author: Person) -> tuple[int, bool]:
        """Ask to lift an active warning. Returns (approval id, created); a cancel of the same
        warning already waiting is returned as it is (asking twice does not make two)."""
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise ApprovalError(404, "Not found", f"no alert {alert_id}", "没有这条预警。")
            if alert.state != AlertState.ACTIVE:
                raise ApprovalError(409, "Not active", f"alert {alert_id} is {alert.state}",
                                    "这条预警已不在生效状态，无需解除。")
            waiting = (await s.exec(select(Approval.id).where(
                Approval.kind == ApprovalKind.CANCEL.value, Approval.alert_id == alert_id,
                Approval.state == ApprovalState.PENDING.value))).first()
            if waiting is not None:
                return waiting, False
            row = Approval(kind=ApprovalKind.CANCEL.value, author=author.name, author_display=author.display,
                           created_at=now, alert_id=alert_id, hazard=alert.hazard, colour=alert.colour,
                           step=alert.step, headline=alert.headline, area_desc=alert.area_desc, reason=reason)
            s.add(row)
            await s.flush()
            assert row.id is not None
            events.record(s, now, "approval_requested", alert_id=alert_id, approval_id=row.id, approval_kind=row.kind,
                          actor=author.name, reason=reason)
        self.on_change()
        return row.id, True

    async def _decide(self, approval_id: int, who: Person, to: ApprovalState, note: str) -> Approval:
        """pending → `to`, by `who`: the compare-and-swap every decision goes through."""
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            row = await s.get(Approval, approval_id)
            if row is None:
                raise ApprovalError(404, "Not found", f"no approval {approval_id}", "没有这条待审核事项。")
            if to == ApprovalState.APPROVED and row.author == who.name:
                raise ApprovalError(403, "Own request",
                                    "the two-person rule: an approval needs someone other than its author",
                                    "不能审核自己提交的事项：需由另一位带班领导审核。")
            moved = await (await s.connection()).execute(update(T).where(
                T.c.id == approval_id, T.c.state == ApprovalState.PENDING.value).values(
                state=to.value, decided_by=who.name, decided_display=who.display, decided_at=now,
                decision_note=note))
            if moved.rowcount != 1:
                raise ApprovalError(409, "Already decided", f"approval {approval_id} is {row.state}",
                                    f"该事项已{_STATE_ZH.get(row.state, row.state)}，不能再次审核。")
            events.record(s, now, f"approval_{to.value}", alert_id=row.alert_id, approval_id=approval_id,
                          approval_kind=row.kind, actor=who.name, author=row.author, note=note or None)
            await s.refresh(row)
        return row

    async def approve(self, approval_id: int, approver: Person, note: str = "") -> Decision:
        """Approve and carry out: the warning goes out, or the warning is lifted. A refusal by
        the ingest (expired meanwhile, already lifted) leaves the approval `failed`, saying why."""
        row = await self._decide(approval_id, approver, ApprovalState.APPROVED, note)
        try:
            if row.kind == ApprovalKind.PUBLISH:
                result = await self.ingestor.submit_cap(row.cap_xml.encode("utf-8"), source="console",
                                                        actor=row.author, approved_by=approver.name)
            else:
                assert row.alert_id is not None
                result = await self.ingestor.cancel(row.alert_id, row.reason or "值班台解除", actor=row.author,
                                                    approved_by=approver.name)
        except IngestError as e:
            await self._failed(row, f"{e.title}: {e.detail}")
            return Decision(approval_id, ApprovalState.FAILED, row.alert_id, error=f"{e.title}: {e.detail}")
        async with self.db.session() as s, s.begin():
            await (await s.connection()).execute(update(T).where(T.c.id == approval_id).values(
                alert_id=result.alert_id, result=_result(result)))
        self.on_change()
        return Decision(approval_id, ApprovalState.APPROVED, result.alert_id, result=result)

    async def reject(self, approval_id: int, approver: Person, note: str) -> Decision:
        row = await self._decide(approval_id, approver, ApprovalState.REJECTED, note)
        self.on_change()
        return Decision(approval_id, ApprovalState.REJECTED, row.alert_id)

    async def _failed(self, row: Approval, error: str) -> None:
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            await (await s.connection()).execute(update(T).where(
                T.c.id == row.id, T.c.state == ApprovalState.APPROVED.value).values(
                state=ApprovalState.FAILED.value, error=error))
            events.record(s, now, "approval_failed", alert_id=row.alert_id, approval_id=row.id, approval_kind=row.kind,
                          actor=row.decided_by, author=row.author, error=error)


_STATE_ZH = {ApprovalState.APPROVED.value: "批准", ApprovalState.REJECTED.value: "驳回",
             ApprovalState.FAILED.value: "批准（执行失败）"}


def _result(r: IngestResult) -> dict[str, Any]:
    return {"alert_id": r.alert_id, "created": r.created, "state": r.state, "calls": r.calls,
            "deliveries": r.deliveries, "cancelled_calls": r.cancelled_calls, "gaps": len(r.gaps)}
