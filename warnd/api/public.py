"""HTTP routes for the public lists: read (numbers masked unless the role may see them),
export (full numbers, for those roles only), subscribe and unsubscribe (recorded with time,
channel "api" and the acting user)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web

from warnd.api.auth import Rule, principal
from warnd.api.problems import problem
from warnd.app import App
from warnd.auth.permissions import allowed
from warnd.public.subscriptions import (
    SubscriptionError,
    export_rows,
    phone_of,
    recipients,
    subscribe,
    unsubscribe,
)


def _dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json() if request.body_exists else {}
    except (ValueError, LookupError, RecursionError):
        return problem(400, "Bad request", "body must be a JSON object")
    if not isinstance(body, dict):
        return problem(400, "Bad request", "body must be a JSON object")
    return body


def public_routes(app: App, key: web.AppKey[App]) -> list[tuple[web.RouteDef, Rule]]:
    async def list_recipients(request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            limit = min(max(int(q.get("limit", "100")), 1), 1000)
            offset = max(int(q.get("offset", "0")), 0)
        except ValueError:
            return problem(400, "Bad request", "limit and offset must be whole numbers", field="limit")
        full = allowed(principal(request).role, "public.phones") and q.get("full") == "1"
        body = await recipients(app.db, village=q.get("village") or None, limit=limit, offset=offset,
                                full_numbers=full)
        return web.json_response(body, dumps=_dumps)

    async def export(request: web.Request) -> web.StreamResponse:
        out = io.StringIO()
        csv.writer(out).writerows(await export_rows(app.db))
        return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"), content_type="text/csv",
                            charset="utf-8", headers={"Content-Disposition": 'attachment; filename="public.csv"'})

    async def post_subscribe(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        try:
            out = await subscribe(app.db, phone=phone_of(body.get("phone")), region_code=str(body.get("region_code", "")),
                                  kind=str(body.get("kind", "subscriber")), name=str(body.get("name", ""))[:64],
                                  source=str(body.get("source", ""))[:64], now=app.clock.now(),
                                  actor=principal(request).name)
        except SubscriptionError as e:
            return problem(400, "Bad request", e.detail, field=e.field)
        return web.json_response(out, status=201 if out["created"] else 200, dumps=_dumps)

    async def post_unsubscribe(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        try:
            phone = phone_of(body.get("phone"))
        except SubscriptionError as e:
            return problem(400, "Bad request", e.detail, field=e.field)
        out = await unsubscribe(app.db, phone=phone, now=app.clock.now(), actor=principal(request).name)
        return web.json_response(out, dumps=_dumps)

    return [
        (web.get("/api/v1/public/recipients", list_recipients), "public.read"),
        (web.get("/api/v1/public/recipients.csv", export), "public.phones"),
        (web.post("/api/v1/public/subscriptions", post_subscribe), "public.manage"),
        (web.post("/api/v1/public/unsubscribe", post_unsubscribe), "public.manage"),
    ]
