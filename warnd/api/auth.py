"""Who is calling, and may they: the authentication and authorisation middleware.

Every route is declared when it is registered (`Access.add`): either a permission from
warnd.auth.permissions.PERMISSIONS, or `Public(why)` for routes that authenticate by other
means (provider webhooks check signatures, the confirm page checks its signed link, feed push
checks the source's own token). A route without a declaration is refused (403) and stops the
server from starting, so nothing new is ever open by accident.

Credentials, in order: `Authorization: Bearer` (a personal token `wdt_...`, or one of the
shared config tokens, which act as the machine pseudo-user "api-token"), else the console's
session cookie. A session request that changes anything (any method but GET/HEAD/OPTIONS)
must carry the session's CSRF token, in the `X-CSRF-Token` header or a `csrf_token` form
field. Bearer requests need none: browsers never attach them on their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

import structlog
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute

from warnd.api.keys import PRINCIPAL
from warnd.api.middleware import bounded
from warnd.api.problems import problem
from warnd.auth import credentials as cred
from warnd.auth.permissions import PERMISSIONS, allowed
from warnd.auth.service import AuthService, Principal
from warnd.console.render import error_page

log = structlog.get_logger("warnd.api.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Public:
    """No warnd identity needed; `why` says how the route protects itself instead.
    `session`: the page adapts to a console session itself (/, /login), nothing more."""

    why: str
    session: bool = False


Rule = str | Public  # a permission name, or Public


@dataclass(frozen=True)
class Cookies:
    session: str
    login: str  # the login form's own CSRF cookie (before there is a session)
    secure: bool

    @classmethod
    def for_base_url(cls, public_base_url: str) -> Cookies:
        # Over https the __Host- prefix makes the browser refuse a cookie that is not Secure,
        # not Path=/ or set for a parent domain.
        if public_base_url.lower().startswith("https://"):
            return cls("__Host-warnd_session", "__Host-warnd_login", True)
        return cls("warnd_session", "warnd_login", False)

    def set(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=self.secure)

    def clear(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(name, path="/", httponly=True, samesite="Strict", secure=self.secure)


class Access:
    """The per-route declarations of one application."""

    def __init__(self) -> None:
        self._rules: dict[tuple[AbstractResource, str], Rule] = {}

    def add(self, router: web.UrlDispatcher, routes: Iterable[tuple[web.RouteDef, Rule]]) -> None:
        for route_def, rule in routes:
            if isinstance(rule, str) and rule not in PERMISSIONS:
                raise ValueError(f"{route_def.method} {route_def.path}: unknown permission {rule!r}")
            for route in route_def.register(router):
                self.declare(route, rule)

    def declare(self, route: AbstractRoute, rule: Rule) -> None:
        assert route.resource is not None
        self._rules[(route.resource, _method(route.method))] = rule

    def rule(self, route: AbstractRoute) -> Rule | None:
        if route.resource is None:
            return None
        return self._rules.get((route.resource, _method(route.method)))

    def undeclared(self, router: web.UrlDispatcher) -> list[str]:
        return [f"{r.method} {r.resource.canonical}" for r in router.routes()
                if r.resource is not None and self.rule(r) is None]


def _method(method: str) -> str:
    return "GET" if method == "HEAD" else method  # aiohttp adds a HEAD route beside each GET


AUTH = web.AppKey("auth", AuthService)
ACCESS = web.AppKey("access", Access)
COOKIES = web.AppKey("cookies", Cookies)


def install(app: web.Application, auth: AuthService, public_base_url: str) -> Access:
    """Put the auth service, the declarations and the cookie names on the application."""
    access = Access()
    app[AUTH], app[ACCESS], app[COOKIES] = auth, access, Cookies.for_base_url(public_base_url)
    app.on_startup.append(all_declared)
    return access


async def all_declared(app: web.Application) -> None:
    """Startup check: a route nobody declared a permission for stops the server."""
    missing = app[ACCESS].undeclared(app.router)
    if missing:
        raise RuntimeError(f"routes without a declared permission: {', '.join(missing)}")


def principal(request: web.Request) -> Principal:
    """The caller of a route that declared a permission (set by the middleware)."""
    p = request.get(PRINCIPAL)
    assert p is not None, "principal() on a public route"
    return p


async def session_principal(request: web.Request) -> Principal | None:
    """The session of the console cookie, for public pages that adapt to it (/, /login)."""
    token = request.cookies.get(request.app[COOKIES].session, "")
    return await request.app[AUTH].session(token) if token else None


def _is_api(request: web.Request) -> bool:
    """Machine routes: refused with problem+json and a 401, never sent to the login page."""
    return request.path.startswith("/api/") or request.path == "/metrics"


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    if route.resource is None:  # no such path or method: aiohttp's own 404/405
        return await handler(request)
    rule = request.app[ACCESS].rule(route)
    if rule is None:
        log.error("route without a declared permission", method=request.method, path=route.resource.canonical)
        return _refuse(request, 403, "此地址未声明访问权限。", "this route declares no permission")
    if isinstance(rule, Public):
        return await handler(request)

    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        who = await request.app[AUTH].bearer(value.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            return _refuse(request, 401, "令牌无效或已失效。", "a valid bearer token is required")
    else:
        who = await session_principal(request)
        if who is None:
            return _unauthenticated(request)
    if not allowed(who.role, rule):
        log.info("forbidden", actor=who.name, role=who.role.value, permission=rule, method=request.method,
                 path=request.path)
        return _refuse(request, 403, "您的账户无权执行此操作。",
                       f"role {who.role.value} may not {rule}", me=who, permission=rule)
    if who.via == "session" and request.method not in SAFE_METHODS and request.content_type in FORM_TYPES:
        request = await bounded(request)  # the CSRF field is in the form: read it within the body limits
    if who.via == "session" and request.method not in SAFE_METHODS and not await _csrf_ok(request, who):
        log.warning("csrf check failed", actor=who.name, method=request.method, path=request.path)
        return _refuse(request, 403, "页面已过期或来源不明，请刷新页面后重试。",
                       f"a session request that changes something needs the {CSRF_HEADER} header", me=who)
    request[PRINCIPAL] = who
    return await handler(request)


async def _csrf_ok(request: web.Request, who: Principal) -> bool:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in FORM_TYPES:
        form = await request.post()  # cached by aiohttp: the handler reads the same form
        value = form.get(CSRF_FIELD, "")
        given = value if isinstance(value, str) else ""
    return bool(given) and who.csrf is not None and cred.same(given, who.csrf)


def _unauthenticated(request: web.Request) -> web.StreamResponse:
    if not _is_api(request) and request.method in SAFE_METHODS:
        target = request.path_qs if request.path != "/" else "/console"
        raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}")
    return _refuse(request, 401, "请先登录。", "log in, or send a bearer token (Authorization: Bearer <token>)")


def _refuse(request: web.Request, status: int, zh: str, detail: str, me: Principal | None = None,
            **extra: str) -> web.StreamResponse:
    if _is_api(request):
        resp = problem(status, "Unauthorized" if status == 401 else "Forbidden", detail, **extra)
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="warnd"'
        return resp
    return error_page(request, status, zh, me)
