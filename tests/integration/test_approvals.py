"""The two-person rule through the real HTTP API and database: a red or imminent warning
composed by hand and every cancel wait for an approver other than their author; both names
end up in the event log; rejection and refusals change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from support.channel_stack import Stack, build_stack, imminent, stop_stack
from support.users import bearer, token_for
from warnd.cap.writer import cap_document
from warnd.core.compose import Area, Draft, draft_message
from warnd.core.domain import Colour, Step
from warnd.db.models import Alert, Approval, Call, Event
from warnd.engine.approvals import Person
from warnd.views.approvals import approvals, pending_count


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await build_stack(db_url, tmp_path)
    stack.extra["leader"] = bearer(await token_for(stack.engine.db, "lifang", "approver"))
    stack.extra["leader2"] = bearer(await token_for(stack.engine.db, "chenfz", "approver"))
    stack.extra["auditor"] = bearer(await token_for(stack.engine.db, "audit", "auditor"))
    stack.extra["admin"] = bearer(await token_for(stack.engine.db, "root1", "admin"))
    try:
        yield stack
    finally:
        await stop_stack(stack)


async def composed(st: Stack, author: str, ident: str = "C-1", hours: float = 6) -> int:
    """A red imminent warning written on the console by `author`, waiting for approval."""
    draft = Draft("rainstorm", Colour.RED, Step.IMMINENT, Area(("431222100200",), "官庄镇辰龙关村"),
                  "沅陵县发布暴雨红色临灾预警", "特大暴雨。", "请立即转移。", hours)
    msg = draft_message(draft, identifier=ident, sender="warnd-console@431222", sender_name="沅陵县防汛抗旱指挥部",
                        hazard_zh="暴雨", author=author, now=st.clock.now())
    return await st.engine.approvals.request_publish(
        cap_document(msg), Person(author, "作者"), hazard="rainstorm", colour="red", step="imminent",
        headline=draft.headline, area_desc=draft.area.description, summary={"officials": 4})


async def post(st: Stack, path: str, headers: dict[str, str], **kw: Any) -> tuple[int, dict[str, Any]]:
    r = await st.http.post(path, headers=headers, **kw)
    return r.status, await r.json()


async def count(st: Stack, model: Any, *where: Any) -> int:
    async with st.engine.db.read() as s:
        return int((await s.exec(select(func.count()).select_from(model).where(*where))).one())


async def events(st: Stack, *kinds: str) -> list[Event]:
    async with st.engine.db.read() as s:
        return list((await s.exec(select(Event).where(col(Event.kind).in_(kinds)).order_by(col(Event.id)))).all())


async def test_the_author_cannot_approve_their_own_warning_another_approver_can(st: Stack) -> None:
    aid = await composed(st, "lifang")  # an approver wrote it: still needs someone else
    assert await pending_count(st.engine.db) == 1
    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader"])
    assert status == 403 and body["title"] == "Own request"
    # Neither a duty officer, an auditor nor an administrator may approve.
    for who in (st.officer, st.extra["auditor"], st.extra["admin"]):
        status, body = await post(st, f"/api/v1/approvals/{aid}/approve", who)
        assert status == 403 and body["permission"] == "alerts.approve"
    assert await count(st, Alert) == 0 and await pending_count(st.engine.db) == 1

    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader2"], json={"note": "同意"})
    assert status == 200 and body["state"] == "approved" and body["calls"] == 5  # red: the township head too
    assert await count(st, Call, Call.alert_id == body["alert_id"]) == 5
    async with st.engine.db.read() as s:
        alert = await s.get(Alert, body["alert_id"])
    assert alert is not None and (alert.source, alert.colour, alert.step) == ("console", "red", "imminent")
    assert alert.sender == "warnd-console@431222" and "<note>值班台编写：lifang</note>" in alert.raw_xml
    # Both names in the event log.
    accepted = (await events(st, "alert_accepted"))[0]
    assert (accepted.data["actor"], accepted.data["approved_by"], accepted.data["source"]) == (
        "lifang", "chenfz", "console")
    decided = (await events(st, "approval_approved"))[0]
    assert (decided.data["actor"], decided.data["author"], decided.data["note"]) == ("chenfz", "lifang", "同意")
    assert [e.data["actor"] for e in await events(st, "approval_requested")] == ["lifang"]
    # Decided once: a second approval changes nothing.
    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader2"])
    assert status == 409
    assert await count(st, Alert) == 1 and await pending_count(st.engine.db) == 0


async def test_a_rejected_warning_never_goes_out(st: Stack) -> None:
    aid = await composed(st, "duty")
    status, body = await post(st, f"/api/v1/approvals/{aid}/reject", st.extra["leader"], json={"note": " "})
    assert status == 400 and body["field"] == "note"
    status, body = await post(st, f"/api/v1/approvals/{aid}/reject", st.officer, json={"note": "x"})
    assert status == 403
    status, body = await post(st, f"/api/v1/approvals/{aid}/reject", st.extra["leader"], json={"note": "雨量不够红色"})
    assert status == 200 and body["state"] == "rejected"
    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader2"])
    assert status == 409
    assert await count(st, Alert) == 0
    ev = (await events(st, "approval_rejected"))[0]
    assert (ev.data["actor"], ev.data["author"], ev.data["note"]) == ("lifang", "duty", "雨量不够红色")
    r = await st.http.get("/api/v1/approvals?state=rejected", headers=st.officer)
    rows = (await r.json())["approvals"]
    assert [(a["id"], a["decided_by"], a["note"]) for a in rows] == [(aid, "lifang", "雨量不够红色")]


async def test_a_cancel_waits_for_a_second_person(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("RS-C")))["id"]
    status, body = await post(st, f"/api/v1/alerts/{alert_id}/cancel", st.officer, json={"reason": "雨停"})
    assert status == 202 and body["state"] == "pending" and body["created"] is True
    aid = body["approval"]
    # Asking again does not make a second request.
    status, again = await post(st, f"/api/v1/alerts/{alert_id}/cancel", st.extra["leader"], json={"reason": "雨停了"})
    assert status == 202 and again["approval"] == aid and again["created"] is False
    async with st.engine.db.read() as s:
        assert (await s.get(Alert, alert_id)).state == "active"  # type: ignore[union-attr]
    assert await count(st, Call, Call.alert_id == alert_id, Call.state == "open") == 4
    # Listed for the board.
    r = await st.http.get("/api/v1/approvals", headers=st.extra["auditor"])
    assert [(a["id"], a["kind"], a["author"], a["reason"]) for a in (await r.json())["approvals"]] == [
        (aid, "cancel", "duty", "雨停")]
    assert (await st.http.get("/api/v1/approvals", headers=bearer("test-token-0123456789"))).status == 403

    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader"])
    assert status == 200 and body["cancelled_calls"] == 4
    async with st.engine.db.read() as s:
        assert (await s.get(Alert, alert_id)).state == "cancelled"  # type: ignore[union-attr]
    ev = (await events(st, "alert_cancelled"))[0]
    assert (ev.data["actor"], ev.data["approved_by"], ev.data["reason"]) == ("duty", "lifang", "雨停")


async def test_an_approvers_own_cancel_needs_another_approver(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("RS-D")))["id"]
    status, body = await post(st, f"/api/v1/alerts/{alert_id}/cancel", st.extra["leader"], json={})
    assert status == 202
    status, _ = await post(st, f"/api/v1/approvals/{body['approval']}/approve", st.extra["leader"])
    assert status == 403
    status, _ = await post(st, f"/api/v1/approvals/{body['approval']}/approve", st.extra["leader2"])
    assert status == 200


async def test_cancel_of_what_is_not_active_is_refused_at_once(st: Stack) -> None:
    status, body = await post(st, "/api/v1/alerts/999/cancel", st.officer, json={})
    assert status == 404 and body["title"] == "Not found"
    status, body = await post(st, "/api/v1/alerts/999/cancel", {**st.officer, "Content-Type": "application/json"},
                              data=b"{")
    assert status == 400
    assert await count(st, Approval) == 0


async def test_an_approval_the_ingest_refuses_is_failed_and_says_why(st: Stack) -> None:
    aid = await composed(st, "duty", hours=1)
    await st.clock.advance(timedelta(hours=2))  # approved too late: the warning has expired
    status, body = await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader"])
    assert status == 409 and body["state"] == "failed" and "Expired" in body["error"]
    assert await count(st, Alert) == 0
    rows = await approvals(st.engine.db, None)
    assert rows[0]["state"] == "failed" and rows[0]["decided_by"] == "lifang"
    # A cancel approved after the warning was lifted some other way.
    alert_id = (await st.post_cap(imminent("RS-E", sent=st.clock.now())))["id"]
    _, body = await post(st, f"/api/v1/alerts/{alert_id}/cancel", st.officer, json={})
    await st.engine.ingestor.cancel(alert_id, "feed cancel")
    status, body = await post(st, f"/api/v1/approvals/{body['approval']}/approve", st.extra["leader"])
    assert status == 409 and body["state"] == "failed"
    assert [e.data["author"] for e in await events(st, "approval_failed")] == ["duty", "duty"]


async def test_a_waiting_approval_alarms_on_the_board_until_decided(st: Stack) -> None:
    async def waiting() -> list[dict[str, Any]]:
        r = await st.http.get("/console/alarms/stream?once=1", headers=st.officer)
        text = await r.text()
        alarms = json.loads("".join(line[6:] for line in text.splitlines() if line.startswith("data: ")))
        return [a for a in alarms if a["kind"] == "approval_waiting"]

    aid = await composed(st, "lifang")
    [alarm] = await waiting()
    assert alarm["key"] == f"approval:{aid}" and alarm["link"] == f"/console/approvals/{aid}"
    assert "发布预警待审核" in alarm["text"] and "作者" in alarm["text"]
    await post(st, f"/api/v1/approvals/{aid}/approve", st.extra["leader2"], json={"note": "同意"})
    assert await waiting() == []
