"""Console pages of the warnings: 预警列表 (`/console/alerts`), the 叫应 board of one warning
(`/console/alerts/{id}`, live by `/console/alerts/{id}/stream`), the board chooser
(`/console/board`: the active warnings) and the duty officer's "phoned and confirmed" form
(`POST /console/calls/{id}/ack`, a note required, recorded under the officer's name).
The data comes from warnd/views/alerts.py and warnd/views/callboard.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlmodel import col, select

from warnd.api.auth import Rule, principal
from warnd.app import App
from warnd.auth.permissions import allowed
from warnd.console import live
from warnd.console.render import error_page, render, render_fragment
from warnd.console.status import alarms_frame
from warnd.core.domain import AlertState, ConfirmVia
from warnd.db.models import Alert
from warnd.views.alerts import AlertFilter, FilterError, list_alerts, townships
from warnd.views.callboard import callboard

MAX_NOTE = 500


def routes(engine: App) -> list[tuple[web.RouteDef, Rule]]:
    def alert_id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound() from None

    async def board_data(request: web.Request, aid: int) -> dict[str, Any] | None:
        return await callboard(engine.db, aid, engine.clock.now(), engine.roles, engine.vocab.label)

    async def alerts_page(request: web.Request) -> web.StreamResponse:
        try:
            f = AlertFilter.parse(request.query, default_kind="real")
        except FilterError as e:
            f, error = AlertFilter(kind="real"), e.detail
        else:
            error = ""
        data = await list_alerts(engine.db, f, engine.clock.now(), engine.vocab.label)

        def link(**change: Any) -> str:
            return "/console/alerts?" + urlencode(f.query(**change))

        return render(request, "alerts.html", title="预警列表", data=data, f=f, link=link, error=error,
                      townships=await townships(engine.db), status=400 if error else 200)

    async def board_page(request: web.Request) -> web.StreamResponse:
        aid = alert_id(request)
        board = await board_data(request, aid)
        if board is None:
            return error_page(request, 404, "没有这条预警。")
        return render(request, "board.html", title=f"叫应看板 · {board['alert']['headline'] or aid}", board=board,
                      can_ack=_can(request, "calls.ack"), flash=request.query.get("ack", ""))

    async def board_stream(request: web.Request) -> web.StreamResponse:
        aid = alert_id(request)
        if await board_data(request, aid) is None:
            return error_page(request, 404, "没有这条预警。")
        can_ack = _can(request, "calls.ack")

        async def frames() -> list[tuple[str, str]]:
            board = await board_data(request, aid)
            if board is None:
                return []
            # The page's alarm bar listens on this stream too: one connection per page (a
            # browser holds at most six to one server over HTTP/1.1).
            return [("board", render_fragment(request, "_board.html", board=board, can_ack=can_ack,
                                              csrf=principal(request).csrf)),
                    await alarms_frame(engine, request)]

        return await live.stream(request, engine.db, frames)

    async def board_index(request: web.Request) -> web.StreamResponse:
        async with engine.db.read() as s:
            active = (await s.exec(select(Alert).where(Alert.state == AlertState.ACTIVE).order_by(
                col(Alert.sent).desc(), col(Alert.id).desc()).limit(50))).all()
        if len(active) == 1:
            raise web.HTTPFound(f"/console/alerts/{active[0].id}")
        return render(request, "board_index.html", title="叫应看板", active=active)

    async def ack(request: web.Request) -> web.StreamResponse:
        try:
            call_id = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        form = await request.post()
        note = str(form.get("note", "")).strip()[:MAX_NOTE]
        back = str(form.get("alert", ""))
        if not note:
            return error_page(request, 400, "请填写备注：电话联系了谁、对方怎么说。备注是登记电话叫应的必填项。")
        try:
            out = await engine.calls.confirm(call_id, ConfirmVia.DUTY_OFFICER, None, note,
                                             actor=principal(request).name)
        except KeyError:
            return error_page(request, 404, "没有这条叫应记录。")
        target = f"/console/alerts/{back}" if back.isdigit() else "/console/board"
        raise web.HTTPSeeOther(f"{target}?ack={'ok' if out.confirmed else 'already'}#call-{call_id}")

    return [
        (web.get("/console/alerts", alerts_page, name="console_alerts"), "alerts.read"),
        (web.get("/console/alerts/{id}", board_page, name="console_alert_board"), "calls.read"),
        (web.get("/console/alerts/{id}/stream", board_stream, name="console_alert_stream", allow_head=False), "calls.read"),
        (web.get("/console/board", board_index, name="console_board"), "calls.read"),
        (web.post("/console/calls/{id}/ack", ack, name="console_call_ack"), "calls.ack"),
    ]


def _can(request: web.Request, permission: str) -> bool:
    return allowed(principal(request).role, permission)
