"""HTTP API for the duty room and the services that push warnings, plus provider webhooks."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import text

from warnd.api.feeds import feed_routes
from warnd.api.middleware import BodyLimits, install, own_body, read_body
from warnd.api.problems import problem, unauthorized
from warnd.app import App
from warnd.core.domain import ConfirmVia
from warnd.engine.ingest import IngestError, IngestResult
from warnd.views.board import alert_calls, alert_summary

MAX_CAP_BYTES = 5 * 1024 * 1024  # real CAP can carry embedded audio: keep the limit well above 1 MB
APP = web.AppKey("warnd", App)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Feed push routes authenticate with their source's own token (warnd.api.feeds).
    if request.path.startswith("/api/") and not (request.match_info.route.name or "").startswith("feed_push"):
        tokens = request.app[APP].settings.api.tokens
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens):  # bytes: any header
            return unauthorized("a valid bearer token is required")
    return await handler(request)


def _ingest_body(r: IngestResult) -> dict[str, Any]:
    return {
        "id": r.alert_id, "created": r.created, "step": r.step or None, "colour": r.colour or None,
        "calls": r.calls, "deliveries": r.deliveries, "cancelled_calls": r.cancelled_calls,
        "superseded": r.superseded, "unknown_codes": r.unknown_codes, "out_of_area": r.out_of_area,
        "gaps": [{"region": g.region_code, "role": g.role, "level": g.level} for g in r.gaps],
    }


def _ingest_problem(e: IngestError) -> web.Response:
    return problem(e.status, e.title, e.detail, field=e.field, **e.extra)


@own_body
async def post_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    data = await read_body(request, MAX_CAP_BYTES)
    try:
        result = await engine.ingestor.submit_cap(data, source="api")
    except IngestError as e:
        return _ingest_problem(e)
    return web.json_response(_ingest_body(result), status=201 if result.created else 200,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None


async def get_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    body = await alert_summary(engine.db, _int(request, "id"), engine.clock.now())
    if body is None:
        return problem(404, "Not found", "no such alert")
    return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def get_calls(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    rows = await alert_calls(engine.db, _int(request, "id"), engine.clock.now(), engine.roles)
    if rows is None:
        return problem(404, "Not found", "no such alert")
    return web.json_response({"calls": rows}, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:  # (the body is already read by api/middleware.py)
        return {}
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):  # not JSON or UTF-8, unknown charset, nested too deep
        raise web.HTTPBadRequest() from None
    return body if isinstance(body, dict) else {}


async def ack_call(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    try:
        body = await _json(request)
    except web.HTTPBadRequest:
        return problem(400, "Bad request", "body must be JSON: {\"note\": \"...\"}")
    note = str(body.get("note", "")).strip()
    if not note:
        return problem(400, "Bad request", "a note saying who answered the phone is required", field="note")
    try:
        out = await engine.calls.confirm(_int(request, "id"), ConfirmVia.DUTY_OFFICER, None, note[:500])
    except KeyError:
        return problem(404, "Not found", "no such call")
    return web.json_response({"id": out.call_id, "confirmed": out.confirmed, "state": out.state})


async def cancel_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    try:
        body = await _json(request)
    except web.HTTPBadRequest:
        return problem(400, "Bad request", "body must be JSON")
    try:
        r = await engine.ingestor.cancel(_int(request, "id"), str(body.get("reason", "duty room cancel"))[:500])
    except IngestError as e:
        return _ingest_problem(e)
    return web.json_response(_ingest_body(r))


async def healthz(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    try:
        async with engine.db.read() as s:
            await s.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as e:
        return web.json_response({"status": "error", "database": str(e)}, status=503)
    return web.json_response({"status": "ok", "now": engine.clock.now().isoformat()})


def make_app(app: App) -> web.Application:
    limits = BodyLimits.from_settings(app.settings.server)
    web_app = web.Application(client_max_size=limits.max_bytes)
    install(web_app, limits, auth)  # problem+json errors, bearer tokens, bounded bodies (api/middleware.py)
    web_app[APP] = app
    web_app.router.add_post("/api/v1/alerts", post_alert)
    web_app.router.add_get("/api/v1/alerts/{id}", get_alert)
    web_app.router.add_get("/api/v1/alerts/{id}/calls", get_calls)
    web_app.router.add_post("/api/v1/alerts/{id}/cancel", cancel_alert)
    web_app.router.add_post("/api/v1/calls/{id}/ack", ack_call)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_routes(feed_routes(app.feeds, _ingest_body))
    # Provider webhooks and the mobile confirm pages (/c/{token}, /f/{token}): no bearer token.
    web_app.router.add_routes(app.web_routes())
    return web_app
