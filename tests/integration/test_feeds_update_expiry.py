"""Update / Cancel / expiry semantics: confirmed officials are not called again unless the
colour or step rises; newly covered areas are called; dropped areas stop escalating; a
Cancel stops everything and tells those reached; `expires` passing ends it the same way."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from support.feeds_support import T0, V1, V2, V3, Stack, cap, stack
from warnd.db.models import Alert, Call

ONSET = T0 + timedelta(minutes=30)  # imminent: village officials are called


@pytest.fixture
async def st(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with stack(db_url, tmp_path) as s:
        yield s


async def sent_to(st: Stack, n: int) -> list[str]:
    msgs = await st.sim.wait_for_messages(n, timeout=30)
    return [m.to for m in msgs]


async def test_update_calls_new_areas_stops_dropped_and_keeps_confirmations(st: Stack) -> None:
    status, first = await st.post_cap(cap("U-1", onset=ONSET, geocodes=(V1, V2)))
    assert status == 201 and first["calls"] == 6
    await sent_to(st, 6)
    await st.engine.calls.confirm((await st.calls_by_name(first["id"]))["辰书记"].id, _via())
    # Same colour and step; the area moves from 辰龙关村+桃坪村 to 辰龙关村+麻溪铺村.
    upd = cap("U-2", sent=T0 + timedelta(minutes=5), msg_type="Update", references=[("U-1", T0)],
              onset=ONSET, geocodes=(V1, V3))
    status, second = await st.post_cap(upd)
    assert status == 201 and second["superseded"] == [first["id"]]
    old = await st.calls_by_name(first["id"])
    # Dropped area (桃坪村): its open calls are closed and never escalate.
    assert {old[n].state for n in ("桃书记", "桃主任", "桃网格")} == {"cancelled"}
    new = await st.calls_by_name(second["id"])
    assert set(new) == {"辰书记", "辰主任", "辰网格", "麻书记", "麻主任", "麻网格"}
    assert new["辰书记"].state == "confirmed" and "carried over" in (new["辰书记"].note or "")
    assert new["麻书记"].state == "open" and new["辰主任"].state == "open"
    await st.clock.advance(timedelta(hours=1))
    await st.engine.escalation.fire_due()
    async with st.engine.db.session() as s:
        from sqlmodel import select

        escalated = {c.person_id for c in (await s.exec(select(Call).where(
            Call.alert_id == first["id"], Call.level > 0))).all()}
    assert not escalated  # nothing of the superseded warning escalates


async def test_update_raising_colour_calls_confirmed_officials_again(st: Stack) -> None:
    _, first = await st.post_cap(cap("R-1", onset=ONSET, geocodes=(V1,)))
    await sent_to(st, 3)
    await st.engine.calls.confirm((await st.calls_by_name(first["id"]))["辰书记"].id, _via())
    upd = cap("R-2", sent=T0 + timedelta(minutes=5), msg_type="Update", references=[("R-1", T0)], onset=ONSET,
              event="暴雨橙色预警", headline="沅陵县气象台将暴雨黄色预警升级为橙色", geocodes=(V1,), severity="Severe")
    _, second = await st.post_cap(upd)
    assert second["colour"] == "orange"
    new = await st.calls_by_name(second["id"])
    assert new["辰书记"].state == "open"  # colour rose: must confirm again


async def test_expiry_ends_the_warning_like_a_cancel(st: Stack) -> None:
    _, body = await st.post_cap(cap("E-1", onset=ONSET, geocodes=(V1,), expires=T0 + timedelta(minutes=8)))
    await sent_to(st, 3)
    await st.engine.calls.confirm((await st.calls_by_name(body["id"]))["辰书记"].id, _via())
    expiry = st.engine.expiry
    await all_sent(st, body["id"])
    assert await expiry.expire_due() == []  # not yet
    assert await expiry.next_due() == T0 + timedelta(minutes=8)
    # The worker runs on the manual clock: moving the clock past `expires` ends it (before
    # the 10-minute confirm window runs out, so no escalation races it).
    await st.clock.advance(timedelta(minutes=8))
    for _ in range(300):
        async with st.engine.db.session() as s:
            alert = await s.get(Alert, body["id"])
        if alert is not None and alert.state == "expired":
            break
        import asyncio

        await asyncio.sleep(0.1)
    assert alert is not None and alert.state == "expired"
    calls = await st.calls_by_name(body["id"])
    assert calls["辰书记"].state == "confirmed" and calls["辰主任"].state == "cancelled"
    assert [e.data["calls_cancelled"] for e in await st.events("alert_expired")] == [2]
    await st.clock.advance(timedelta(seconds=30))
    msgs = await st.sim.wait_for_messages(6, timeout=30)
    assert sum("预警解除" in m.body for m in msgs) == 3  # everyone reached is told
    assert await st.engine.escalation.fire_due() == 0
    # A Cancel after expiry has nothing left to cancel.
    status, problem = await st.post_cap(cap("E-2", sent=T0 + timedelta(minutes=20), msg_type="Cancel",
                                            references=[("E-1", T0)]))
    assert status == 422 and problem["title"] == "Nothing to cancel"


async def all_sent(st: Stack, alert_id: int) -> None:
    """The simulator has the messages a moment before the outbox records them as sent."""
    import asyncio

    for _ in range(300):
        if all(d.state == "sent" for d in await st.deliveries(alert_id)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("deliveries not recorded as sent")


def _via():  # type: ignore[no-untyped-def]
    from warnd.core.domain import ConfirmVia

    return ConfirmVia.DUTY_OFFICER
