"""HTTP API for the duty room and the services that push warnings, plus provider webhooks."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import text

from warnd.api import approvals as approvals_api
from warnd.api import auth
from warnd.api.auth import Public, Rule, principal
from warnd.api.feeds import feed_routes
from warnd.api.metrics import metrics_route
from warnd.api.middleware import BodyLimits, install, own_body, read_body
from warnd.api.problems import problem
from warnd.api.public import public_routes
from warnd.api.responses import ingest_body, ingest_status
from warnd.app import App
from warnd.auth.service import AuthService
from warnd.console import alerts as console_alerts
from warnd.console import compose as console_compose
from warnd.console import reports as console_reports
from warnd.console import status as console_status
from warnd.console import views as console
from warnd.console.render import SITE, Site
from warnd.core.domain import ConfirmVia
from warnd.engine.approvals import ApprovalError
from warnd.engine.ingest import IngestError
from warnd.public.coverage import public_coverage
from warnd.speakers.coverage import loudspeaker_coverage
from warnd.views.alerts import AlertFilter, FilterError, list_alerts
from warnd.views.approvals import approval_alarms
from warnd.views.board import alert_calls, alert_summary

MAX_CAP_BYTES = 5 * 1024 * 1024  # real CAP can carry embedded audio: keep the limit well above 1 MB
APP = web.AppKey("warnd", App)

def _ingest_problem(e: IngestError) -> web.Response:
    return problem(e.status, e.title, e.detail, field=e.field, **e.extra)


@own_body
async def post_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    data = await read_body(request, MAX_CAP_BYTES)
    try:
        result = await engine.ingestor.submit_cap(data, source="api", actor=principal(request).name)
    except IngestError as e:
        return _ingest_problem(e)
    return web.json_response(ingest_body(result), status=ingest_status(result),
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None


async def list_alerts_api(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/alerts?from=&to=&township=&kind=all|real|drill&state=&page=&per_page="""
    engine = request.app[APP]
    try:
        f = AlertFilter.parse(request.query)
    except FilterError as e:
        return problem(400, "Bad request", e.detail, field=e.field)
    body = await list_alerts(engine.db, f, engine.clock.now(), engine.vocab.label)
    return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def get_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    alert_id = _int(request, "id")
    body = await alert_summary(engine.db, alert_id, engine.clock.now())
    if body is None:
        return problem(404, "Not found", "no such alert")
    body["loudspeakers"] = await loudspeaker_coverage(engine.db, alert_id)
    body["public"] = await public_coverage(engine.db, body["id"], engine.settings.public.coverage_target)
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
        out = await engine.calls.confirm(_int(request, "id"), ConfirmVia.DUTY_OFFICER, None, note[:500],
                                        actor=principal(request).name)
    except KeyError:
        return problem(404, "Not found", "no such call")
    return web.json_response({"id": out.call_id, "confirmed": out.confirmed, "state": out.state})


async def cancel_alert(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    try:
        body = await _json(request)
    except web.HTTPBadRequest:
        return problem(400, "Bad request", "body must be JSON")
    reason = str(body.get("reason", "") or "值班台解除").strip()[:500]
    # The two-person rule: a person's cancel waits for an approver other than them.
    try:
        approval_id, created = await engine.approvals.request_cancel(_int(request, "id"), reason,
                                                                     approvals_api.person_of(request))
    except ApprovalError as e:
        return approvals_api.approval_problem(e)
    return web.json_response({"approval": approval_id, "state": "pending", "created": created,
                              "detail": "the cancel waits for an approver other than its author"},
                             status=202, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def healthz(request: web.Request) -> web.StreamResponse:
    engine = request.app[APP]
    try:
        async with engine.db.read() as s:
            await s.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as e:
        return web.json_response({"status": "error", "database": str(e)}, status=503)
    return web.json_response({"status": "ok", "now": engine.clock.now().isoformat()})


WEBHOOK = Public("provider webhook: the channel checks the provider's signature")
CONFIRM_LINK = Public("official's confirm page: signed single-use link")
FEED_PUSH = Public("feed push: the source's own token or HMAC (warnd.api.feeds)")


def make_app(app: App) -> web.Application:
    settings = app.settings
    limits = BodyLimits.from_settings(settings.server)
    web_app = web.Application(client_max_size=limits.max_bytes)
    # problem+json errors, then who is asking (headers only), then bounded bodies (api/middleware.py).
    install(web_app, limits, auth.authenticate)
    web_app[APP] = app
    access = auth.install(web_app, AuthService(app.db, settings.auth, settings.api.tokens,
                                               metrics_tokens=settings.metrics.tokens),
                          settings.server.public_base_url)
    web_app[SITE] = Site(settings.county.name, web_app[auth.COOKIES].secure)
    # Who may call each route: warnd/auth/permissions.py (tests/integration/test_roles.py).
    api: list[tuple[web.RouteDef, Rule]] = [
        (web.post("/api/v1/alerts", post_alert), "alerts.submit"),
        (web.get("/api/v1/alerts", list_alerts_api), "alerts.read"),
        (web.get("/api/v1/alerts/{id}", get_alert), "alerts.read"),
        (web.get("/api/v1/alerts/{id}/calls", get_calls), "calls.read"),
        (web.post("/api/v1/alerts/{id}/cancel", cancel_alert), "alerts.cancel"),
        (web.post("/api/v1/calls/{id}/ack", ack_call), "calls.ack"),
        (web.get("/healthz", healthz), Public("liveness probe: no data")),
        (metrics_route(app), "metrics.read"),
    ]
    access.add(web_app.router, api)
    access.add(web_app.router, public_routes(app, APP))
    access.add(web_app.router, approvals_api.routes(app))
    access.add(web_app.router, [(r, FEED_PUSH if (r.kwargs.get("name") or "").startswith("feed_push")
                                 else "feeds.read") for r in feed_routes(app.feeds)])
    for channel in app.channels.values():
        access.add(web_app.router, [(r, WEBHOOK) for r in channel.webhook_routes(app.inbound)])
    access.add(web_app.router, [(r, CONFIRM_LINK) for r in app.confirm_pages.routes()])
    access.add(web_app.router, console.routes())
    access.add(web_app.router, console_compose.routes(app))
    access.add(web_app.router, console_alerts.routes(app))
    access.add(web_app.router, console_status.routes(app))
    access.add(web_app.router, console_reports.routes(app))
    web_app[console_status.ALARM_SOURCES] = [approval_alarms(app.db)]  # warnings and cancels waiting for a second person
    return web_app
