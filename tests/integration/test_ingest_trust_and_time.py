"""Trust follows the chain, time sanity on every path, and nothing vanishes (issue 10 parts
1, 4 and 5): each refusal answers a clear 4xx, records why, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from sqlmodel import col, select

from support.feeds_support import T0, V1, Stack, stack
from warnd.config import IngestCfg
from warnd.db.models import Alert, Call, Delivery, Event

PROV = "prov@hn.cma.gov.cn"
TOWN = "town@431222.gov.cn"
OTHER_COUNTY = "431223100200"


def _t(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat()


def cap(identifier: str, sender: str, *, sent: datetime = T0, msg_type: str = "Alert",
        refs: tuple[tuple[str, str, datetime], ...] = (), severity: str = "Severe",
        expires: datetime | bool | None = True, geocodes: tuple[str, ...] = (V1,)) -> bytes:
    """A CAP 1.2 message; `refs` are (sender, identifier, sent); expires=True: sent + 24 h,
    None: no <expires> at all."""
    exp = sent + timedelta(hours=24) if expires is True else expires
    references = " ".join(f"{s},{i},{_t(w)}" for s, i, w in refs)
    geo = "".join(f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in geocodes)
    info = "" if msg_type == "Cancel" else f"""<info><language>zh-CN</language><category>Met</category>
    <event>暴雨橙色预警</event><urgency>Expected</urgency><severity>{severity}</severity><certainty>Likely</certainty>
    <onset>{_t(sent + timedelta(hours=2))}</onset>{f"<expires>{_t(exp)}</expires>" if isinstance(exp, datetime) else ""}
    <senderName>{escape(sender)}</senderName><headline>暴雨预警 {identifier}</headline>
    <area><areaDesc>测试区</areaDesc>{geo}</area></info>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{identifier}</identifier><sender>{sender}</sender>
<sent>{_t(sent)}</sent><status>Actual</status><msgType>{msg_type}</msgType><scope>Public</scope>
{f"<references>{references}</references>" if references else ""}{info}</alert>""".encode()


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack(db_url, tmp_path, ingest=IngestCfg(may_supersede={"duty@431222.gov.cn": [PROV]})) as s:
        yield s


async def snapshot(st: Stack) -> tuple[list[tuple[str, str]], list[str], int]:
    async with st.engine.db.read() as s:
        alerts = [(a.identifier, a.state) for a in (await s.exec(select(Alert).order_by(col(Alert.id)))).all()]
        calls = [c.state for c in (await s.exec(select(Call).order_by(col(Call.id)))).all()]
        deliveries = len((await s.exec(select(Delivery.id))).all())
    return alerts, calls, deliveries


async def refusals(st: Stack) -> list[dict]:
    return [e.data for e in await st.events("alert_refused")]


# -- part 1: trust follows the chain ----------------------------------------------------------

async def test_a_sender_cannot_cancel_or_update_another_senders_warning(st: Stack) -> None:
    status, first = await st.post_cap(cap("P-1", PROV))
    assert status == 201 and first["calls"] > 0
    before = await snapshot(st)
    for msg_type, ident in (("Cancel", "T-1"), ("Update", "T-2")):
        status, problem = await st.post_cap(cap(ident, TOWN, sent=T0 + timedelta(minutes=5), msg_type=msg_type,
                                                refs=((PROV, "P-1", T0),), severity="Minor"))
        assert status == 403 and problem["field"] == "alert.references", problem
        assert "may not" in problem["detail"] and PROV in problem["detail"]
    assert await snapshot(st) == before  # nothing cancelled, nothing downgraded, no notices queued
    assert [(r["sender"], r["status"]) for r in await refusals(st)] == [(TOWN, 403), (TOWN, 403)]


async def test_the_configuration_may_let_a_sender_supersede_another(st: Stack) -> None:
    await st.post_cap(cap("P-2", PROV))
    status, body = await st.post_cap(cap("D-1", "duty@431222.gov.cn", sent=T0 + timedelta(minutes=5),
                                         msg_type="Cancel", refs=((PROV, "P-2", T0),)))
    assert status == 201 and body["cancelled_calls"] > 0
    # ...and its own warnings stay its own: the province may not cancel the duty room's.
    await st.post_cap(cap("D-2", "duty@431222.gov.cn", sent=T0 + timedelta(minutes=6)))
    status, _ = await st.post_cap(cap("P-3", PROV, sent=T0 + timedelta(minutes=7), msg_type="Cancel",
                                      refs=(("duty@431222.gov.cn", "D-2", T0 + timedelta(minutes=6)),)))
    assert status == 403


# -- part 4: time sanity on every path ----------------------------------------------------------

@pytest.mark.parametrize(("message", "status", "field"), [
    (cap("E-1", PROV, sent=T0 - timedelta(days=2), expires=T0 - timedelta(days=1)), 422, "info.expires"),
    (cap("E-2", PROV, expires=T0 - timedelta(hours=1)), 400, "info.expires"),  # expires before sent
    (cap("E-3", PROV, sent=datetime(2003, 6, 1, tzinfo=T0.tzinfo), expires=None), 422, "alert.sent"),  # stale
    (cap("E-4", PROV, sent=T0 + timedelta(hours=2)), 422, "alert.sent"),  # from the future
])
async def test_messages_out_of_time_are_refused_and_nothing_is_stored(st: Stack, message: bytes, status: int,
                                                                      field: str) -> None:
    got, problem = await st.post_cap(message)
    assert (got, problem["field"]) == (status, field), problem
    assert await snapshot(st) == ([], [], 0)
    assert [r["status"] for r in await refusals(st)] == [status]


# -- part 5: nothing vanishes ----------------------------------------------------------------

async def test_a_warning_for_another_county_is_recorded_not_dropped(st: Stack) -> None:
    status, body = await st.post_cap(cap("N-1", PROV, geocodes=(OTHER_COUNTY,)))
    assert status == 202 and body["state"] == "out_of_area" and body["calls"] == 0
    assert body["out_of_area"] == [OTHER_COUNTY]
    assert await snapshot(st) == ([("N-1", "out_of_area")], [], 0)
    (event,) = await st.events("alert_out_of_area")
    assert event.data["sender"] == PROV and event.data["headline"] == "暴雨预警 N-1"
    status, again = await st.post_cap(cap("N-1", PROV, geocodes=(OTHER_COUNTY,)))
    assert status == 200 and again["id"] == body["id"]  # a retry is the same record
    r = await st.http.get(f"/api/v1/alerts/{body['id']}", headers=st.auth)
    assert r.status == 200 and (await r.json())["state"] == "out_of_area"


async def test_an_update_moving_our_warning_elsewhere_stops_its_calls(st: Stack) -> None:
    _, first = await st.post_cap(cap("M-1", PROV))
    status, body = await st.post_cap(cap("M-2", PROV, sent=T0 + timedelta(minutes=5), msg_type="Update",
                                         refs=((PROV, "M-1", T0),), geocodes=(OTHER_COUNTY,)))
    assert status == 202 and body["superseded"] == [first["id"]] and body["cancelled_calls"] == first["calls"]
    alerts, calls, _ = await snapshot(st)
    assert alerts == [("M-1", "superseded"), ("M-2", "out_of_area")] and set(calls) == {"cancelled"}


async def test_refusals_are_in_the_event_log_with_who_sent_them(st: Stack) -> None:
    await st.post_cap(cap("E-9", PROV, sent=T0 + timedelta(days=1)))
    async with st.engine.db.read() as s:
        kinds = [e.kind for e in (await s.exec(select(Event))).all()]
    assert kinds == ["alert_refused"]
