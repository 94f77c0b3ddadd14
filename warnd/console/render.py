"""Rendering console pages: the Jinja2 environment, the shell's context (who is logged in, the
menu, the county), strict security headers, and the static files.

The Content-Security-Policy allows scripts, styles and fetches from this origin only and no
inline script or style: templates must not use `<script>` bodies, `style=` or `on...=`
attributes. Behaviour goes in static/*.js, looks in static/*.css.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from warnd.api.keys import PRINCIPAL
from warnd.auth.permissions import PERMISSIONS, allowed, permissions_of, role_label
from warnd.auth.service import Principal
from warnd.console.nav import NAV

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
BEIJING = timedelta(hours=8)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; media-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                ".png": "image/png", ".woff2": "font/woff2", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


@dataclass(frozen=True)
class Site:
    """What every page needs that is not per request."""

    county: str  # 沅陵县
    https: bool  # public_base_url is https: send HSTS


SITE = web.AppKey("console_site", Site)

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def beijing(t: datetime) -> str:
    return (t.astimezone(UTC) + BEIJING).strftime("%Y-%m-%d %H:%M")


def beijing_iso(value: str | None, fmt: str = "%m-%d %H:%M") -> str:
    """Template filter `bj`: an ISO time as Beijing wall time ("" for none)."""
    if not value:
        return ""
    return (datetime.fromisoformat(value).astimezone(UTC) + BEIJING).strftime(fmt)


_env.filters["bj"] = beijing_iso


def security_headers(response: web.StreamResponse, https: bool) -> None:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    if https:
        h["Strict-Transport-Security"] = "max-age=31536000"


def render(request: web.Request, template: str, *, status: int = 200, title: str = "",
           me: Principal | None = None, **ctx: Any) -> web.Response:
    site = request.app[SITE]
    if me is None:
        me = request.get(PRINCIPAL)
    body = _env.get_template(template).render(
        site=site, me=me, csrf=me.csrf if me else None, title=title, nav=_nav(request, me),
        role_label=role_label, static=static_url, now_text=beijing(datetime.now(UTC)), **ctx)
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    security_headers(resp, site.https)
    return resp


def error_page(request: web.Request, status: int, message: str, me: Principal | None = None) -> web.Response:
    titles = {401: "请先登录", 403: "无权访问", 404: "未找到", 429: "请稍后再试"}
    return render(request, "error.html", status=status, title=titles.get(status, "出错了"), message=message, me=me)


def _nav(request: web.Request, me: Principal | None) -> list[dict[str, Any]]:
    if me is None:
        return []
    named = request.app.router.named_resources()
    out = []
    for entry in NAV:
        resource = named.get(entry.route)
        if resource is None or not allowed(me.role, entry.permission):
            continue
        url = str(resource.url_for())
        out.append({"label": entry.label, "url": url, "current": request.path == url})
    return out


def abilities(me: Principal) -> list[str]:
    return [PERMISSIONS[p].label for p in permissions_of(me.role)]


# --- static files -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    """Read once: the set is small and fixed, and only these names can ever be served."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        ctype = STATIC_TYPES.get(path.suffix)
        if path.is_file() and ctype:
            body = path.read_bytes()
            files[path.name] = StaticFile(body, ctype, hashlib.sha256(body).hexdigest()[:16])
    return files


def static_url(name: str) -> str:
    f = static_files()[name]
    return f"/static/{name}?v={f.etag}"


async def serve_static(request: web.Request) -> web.StreamResponse:
    f = static_files().get(request.match_info["name"])
    if f is None:
        raise web.HTTPNotFound()
    etag = f'"{f.etag}"'
    # Pages link ?v=<hash>: a new file is a new URL, so the old one may be cached for good.
    cache_control = ("public, max-age=31536000, immutable" if request.query.get("v") == f.etag
                     else "no-cache")
    if request.headers.get("If-None-Match") == etag:
        resp = web.Response(status=304)
    else:
        resp = web.Response(body=f.body, content_type=f.content_type,
                            charset="utf-8" if f.content_type.startswith("text/") else None)
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = cache_control
    security_headers(resp, request.app[SITE].https)
    return resp


def render_fragment(request: web.Request, template: str, **ctx: Any) -> str:
    """A piece of a page (what a live stream sends to replace part of it)."""
    return _env.get_template(template).render(site=request.app[SITE], static=static_url, **ctx)
