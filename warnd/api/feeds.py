"""HTTP routes of the automated feeds.

- `POST /api/v1/feeds/{source}/cap` — a `cap_push` source pushes CAP, authenticated by the
  source's own token (`Authorization: Bearer`) or HMAC (`X-Warnd-Signature`), not by warnd
  users or the shared API tokens (route names starting "feed_push" are declared public).
- `POST /api/v1/feeds/{source}/telemetry` — a `telemetry` source posts JSON readings.
- `GET /api/v1/feeds` — source health (permission feeds.read, declared in warnd/api/app.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warnd.api.problems import problem
from warnd.engine.ingest import IngestError
from warnd.feeds.service import FeedService, PushRejected
from warnd.feeds.telemetry import TelemetryError

if TYPE_CHECKING:
    from warnd.engine.service import Engine

MAX_PUSH_BYTES = 5 * 1024 * 1024
MAX_TELEMETRY_BYTES = 2 * 1024 * 1024


def _dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False)


async def _body(request: web.Request, limit: int) -> bytes | web.Response:
    if request.content_length is not None and request.content_length > limit:
        return problem(413, "Too large", f"limited to {limit} bytes")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "Too large", f"limited to {limit} bytes")
    if len(data) > limit:
        return problem(413, "Too large", f"limited to {limit} bytes")
    return data


def feed_routes(engine: Engine, ingest_body: Any) -> list[web.RouteDef]:
    def feeds() -> FeedService:
        assert engine.feeds is not None
        return engine.feeds

    async def push_cap(request: web.Request) -> web.StreamResponse:
        data = await _body(request, MAX_PUSH_BYTES)
        if isinstance(data, web.Response):
            return data
        try:
            result = await feeds().push(request.match_info["source"], data,
                                        request.headers.get("Authorization"),
                                        request.headers.get("X-Warnd-Signature"))
        except PushRejected as e:
            return problem(e.status, e.title, e.detail, source=request.match_info["source"])
        except IngestError as e:
            return problem(e.status, e.title, e.detail, field=e.field, **e.extra)
        return web.json_response(ingest_body(result), status=201 if result.created else 200, dumps=_dumps)

    async def push_telemetry(request: web.Request) -> web.StreamResponse:
        name = request.match_info["source"]
        src = feeds().sources.get(name)
        data = await _body(request, MAX_TELEMETRY_BYTES)
        if isinstance(data, web.Response):
            return data
        if src is None or src.kind != "telemetry" or not src.enabled:
            await feeds().record("feed_rejected", source=name, reason="no such telemetry source")
            return problem(404, "Unknown source", f"no enabled telemetry source {name!r}")
        if not src.check_auth(request.headers.get("Authorization"), request.headers.get("X-Warnd-Signature"), data):
            await feeds().record("feed_rejected", source=name, reason="bad credentials")
            return problem(401, "Unauthorized", "this source needs its bearer token or an X-Warnd-Signature HMAC")
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
