"""RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.json_response(body, status=status, content_type="application/problem+json",
                             dumps=_dumps)


def unauthorized(detail: str) -> web.Response:
    """401 with the challenge RFC 9110 requires: a bearer token (or, on feed routes, an HMAC)."""
    resp = problem(401, "Unauthorized", detail)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="warnd"'
    return resp


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)
