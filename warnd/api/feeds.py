"""HTTP routes of the automated feeds.

- `POST /api/v1/feeds/{source}/cap` — a `cap_push` source pushes CAP, authenticated by the
  source's own token (`Authorization: Bearer`) or HMAC (`X-Warnd-Signature`), not by warnd
  users or the shared API tokens (route names starting "feed_push" are declared public).
- `POST /api/v1/feeds/{source}/telemetry` — a `telemetry` source posts JSON readings.
- `GET /api/v1/feeds` — source health (permission feeds.read, declared in warnd/api/app.py).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from warnd.api.middleware import own_body, read_body
from warnd.api.problems import problem, unauthorized
from warnd.api.responses import ingest_body, ingest_status
from warnd.engine.ingest import IngestError
from warnd.feeds.service import FeedService, PushRejected
from warnd.feeds.sources import Source
from warnd.feeds.telemetry import TelemetryError

MAX_PUSH_BYTES = 5 * 1024 * 1024
MAX_TELEMETRY_BYTES = 2 * 1024 * 1024
# The same answer whether the source does not exist or the credentials are wrong: the
# response must not tell an outsider which source names exist.
NOT_AUTHORISED = "this source needs its bearer token or an X-Warnd-Signature HMAC"


def _dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False)


def _worth_reading(src: Source | None, kind: str, request: web.Request) -> bool:
    """Read a (large) body only for an enabled source of this kind whose bearer token
    matches, or that has an HMAC secret and was sent a signature (checked against the body)."""
    if src is None or src.kind != kind or not src.enabled:
        return False
    if src.check_auth(request.headers.get("Authorization"), None, b""):
        return True
    return bool(src.secret and request.headers.get("X-Warnd-Signature"))


def feed_routes(service: FeedService) -> list[web.RouteDef]:
    def feeds() -> FeedService:
        return service

    @own_body
    async def push_cap(request: web.Request) -> web.StreamResponse:
        name = request.match_info["source"]
        auth, sig = request.headers.get("Authorization"), request.headers.get("X-Warnd-Signature")
        data = (await read_body(request, MAX_PUSH_BYTES)
                if _worth_reading(feeds().sources.get(name), "cap_push", request) else b"")
        try:
            result = await feeds().push(name, data, auth, sig)
        except PushRejected as e:
            if e.status in (401, 404):
                return unauthorized(NOT_AUTHORISED)
            return problem(e.status, e.title, e.detail, source=name)
        except IngestError as e:
            return problem(e.status, e.title, e.detail, field=e.field, **e.extra)
        return web.json_response(ingest_body(result), status=ingest_status(result), dumps=_dumps)

    @own_body
    async def push_telemetry(request: web.Request) -> web.StreamResponse:
        name = request.match_info["source"]
        src = feeds().sources.get(name)
        if not _worth_reading(src, "telemetry", request):
            known = src is not None and src.kind == "telemetry" and src.enabled
            await feeds().record("feed_rejected", source=name,
                                 reason="bad credentials" if known else "no such telemetry source")
            return unauthorized(NOT_AUTHORISED)
        assert src is not None
        data = await read_body(request, MAX_TELEMETRY_BYTES)
        if not src.check_auth(request.headers.get("Authorization"), request.headers.get("X-Warnd-Signature"), data):
            await feeds().record("feed_rejected", source=name, reason="bad credentials")
            return unauthorized(NOT_AUTHORISED)
        try:
            outcomes = await feeds().telemetry.submit_json(data, src)
        except TelemetryError as e:
            return problem(422, "Invalid telemetry", e.detail, field=e.field)
        return web.json_response({"readings": [o.as_json() for o in outcomes]}, dumps=_dumps)

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"feeds": await feeds().health()}, dumps=_dumps)

    return [
        web.post("/api/v1/feeds/{source}/cap", push_cap, name="feed_push_cap"),
        web.post("/api/v1/feeds/{source}/telemetry", push_telemetry, name="feed_push_telemetry"),
        web.get("/api/v1/feeds", health, name="feeds_health"),
    ]
