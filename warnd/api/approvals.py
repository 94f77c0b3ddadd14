"""The two-person rule over HTTP (JSON; the console's pages are in warnd/console/compose.py):

- `GET /api/v1/approvals[?state=pending|approved|rejected|failed|all]` — what waits (console.view)
- `POST /api/v1/approvals/{id}/approve` — approve and carry out (alerts.approve; not its author)
- `POST /api/v1/approvals/{id}/reject` — `{"note": "..."}` required (alerts.approve)

`POST /api/v1/alerts/{id}/cancel` by a person answers 202 with the approval it opened.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from warnd.api.auth import Rule
from warnd.api.keys import PRINCIPAL
from warnd.api.problems import problem
from warnd.app import App
from warnd.core.domain import ApprovalState
from warnd.engine.approvals import ApprovalError, Decision, Person
from warnd.views.approvals import approval, approvals

MAX_NOTE = 500


def _dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False)


def person_of(request: web.Request) -> Person:
    p = request[PRINCIPAL]
    return Person(p.name, p.display_name)


def approval_problem(e: ApprovalError) -> web.Response:
    return problem(e.status, e.title, e.detail)


def decision_body(d: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {"approval": d.approval_id, "state": d.state.value, "alert_id": d.alert_id}
    if d.result is not None:
        body.update(calls=d.result.calls, deliveries=d.result.deliveries,
                    cancelled_calls=d.result.cancelled_calls, alert_state=d.result.state)
    if d.error:
        body["error"] = d.error
    return body


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def _note(request: web.Request) -> str | None:
    if not request.body_exists:
        return ""
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    return str(body.get("note", "")).strip()[:MAX_NOTE]


def routes(app: App) -> list[tuple[web.RouteDef, Rule]]:
    async def list_approvals(request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("state", "pending")
        if wanted != "all" and wanted not in set(ApprovalState):
            return problem(400, "Bad request", f"state must be one of {', '.join(ApprovalState)} or all",
                           field="state")
        rows = await approvals(app.db, None if wanted == "all" else ApprovalState(wanted))
        return web.json_response({"approvals": rows}, dumps=_dumps)

    async def approve(request: web.Request) -> web.StreamResponse:
        note = await _note(request)
        if note is None:
            return problem(400, "Bad request", "body must be JSON: {\"note\": \"...\"} (optional)")
        try:
            d = await app.approvals.approve(_id(request), person_of(request), note)
        except ApprovalError as e:
            return approval_problem(e)
        return web.json_response(decision_body(d), status=200 if d.state == ApprovalState.APPROVED else 409,
                                 dumps=_dumps)

    async def reject(request: web.Request) -> web.StreamResponse:
        note = await _note(request)
        if not note:
            return problem(400, "Bad request", "a note saying why is required: {\"note\": \"...\"}", field="note")
        try:
            d = await app.approvals.reject(_id(request), person_of(request), note)
        except ApprovalError as e:
            return approval_problem(e)
        return web.json_response(decision_body(d), dumps=_dumps)

    async def get_one(request: web.Request) -> web.StreamResponse:
        row = await approval(app.db, _id(request))
        if row is None:
            return problem(404, "Not found", "no such approval")
        return web.json_response(row, dumps=_dumps)

    return [
        (web.get("/api/v1/approvals", list_approvals), "console.view"),
        (web.get("/api/v1/approvals/{id}", get_one), "console.view"),
        (web.post("/api/v1/approvals/{id}/approve", approve), "alerts.approve"),
        (web.post("/api/v1/approvals/{id}/reject", reject), "alerts.approve"),
    ]
