"""The console shell: `/` (to the console or the login page), `/login`, `/logout`, the home page
`/console`, and `/static/{name}`. The pages of the storm (alerts, compose, board, alarms,
health, readiness, reports) register their own routes under the names in nav.py.

The login form is protected against login CSRF before any session exists: GET /login sets a
random cookie, the form carries a token derived from it, and POST /login wants both.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from warnd.api.auth import AUTH, COOKIES, Public, Rule, principal, session_principal
from warnd.auth import credentials as cred
from warnd.auth.service import LoginStatus
from warnd.console.render import abilities, beijing, render, serve_static

MAX_FIELD = 256
LOCKED_ACCOUNT = "登录失败次数过多，该账户已暂停登录，请于 {until}（北京时间）后再试，或请管理员解锁。"
LOCKED_ADDRESS = "本终端登录失败次数过多，已暂停登录，请于 {until}（北京时间）后再试。"
BAD_LOGIN = "登录名或密码错误。"
DISABLED = "该账户已停用，请联系管理员。"
EXPIRED_FORM = "登录页面已过期，请重新输入。"


def safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no //host, no backslash tricks)."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or len(value) > 500 or any(ord(c) < 0x20 for c in value)):
        return "/console"
    return value


def routes() -> list[tuple[web.RouteDef, Rule]]:
    own_check = Public("login page and its redirects", session=True)
    return [
        (web.get("/", root, name="root"), own_check),
        (web.get("/login", login_page, name="login"), own_check),
        (web.post("/login", login_submit, name="login_submit"), Public("the login form (login-CSRF cookie)")),
        (web.post("/logout", logout, name="logout"), "console.view"),
        (web.get("/console", home, name="console_home"), "console.view"),
        (web.get("/static/{name}", serve_static, name="static"), Public("stylesheets and scripts")),
    ]


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console" if await session_principal(request) else "/login")


def _login_form(request: web.Request, *, status: int = 200, error: str = "", name: str = "",
                notice: str = "") -> web.Response:
    cookies = request.app[COOKIES]
    seed = request.cookies.get(cookies.login, "")
    fresh = not (20 <= len(seed) <= 128)
    if fresh:
        seed = cred.new_session_token()
    resp = render(request, "login.html", status=status, title="登录", error=error, name=name, notice=notice,
                  login_token=cred.csrf_for(seed), next=safe_next(request.query.get("next")))
    if fresh:
        cookies.set(resp, cookies.login, seed)
    return resp


async def login_page(request: web.Request) -> web.StreamResponse:
    if await session_principal(request):
        raise web.HTTPFound(safe_next(request.query.get("next")))
    return _login_form(request, notice="已退出登录。" if request.query.get("bye") else "")


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", ""))[:MAX_FIELD].strip()
    password = str(form.get("password", ""))[:MAX_FIELD + 1]
    seed = request.cookies.get(request.app[COOKIES].login, "")
    if not seed or not cred.same(str(form.get("csrf_token", "")), cred.csrf_for(seed)):
        return _login_form(request, status=403, error=EXPIRED_FORM, name=name)
    if not name or not password:
        return _login_form(request, status=400, error="请输入登录名和密码。", name=name)
    outcome = await request.app[AUTH].login(name, password, request.remote or "",
                                            request.headers.get("User-Agent", ""))
    if outcome.status == LoginStatus.OK:
        assert outcome.session_token is not None
        done = web.HTTPSeeOther(safe_next(str(form.get("next", ""))))
        cookies = request.app[COOKIES]
        cookies.set(done, cookies.session, outcome.session_token)
        cookies.clear(done, cookies.login)
        raise done
    if outcome.status in (LoginStatus.ACCOUNT_LOCKED, LoginStatus.ADDRESS_LOCKED):
        until: datetime = outcome.locked_until or request.app[AUTH].clock.now()
        text = LOCKED_ACCOUNT if outcome.status == LoginStatus.ACCOUNT_LOCKED else LOCKED_ADDRESS
        resp = _login_form(request, status=429, error=text.format(until=beijing(until)[11:]), name=name)
        resp.headers["Retry-After"] = str(max(1, int((until - request.app[AUTH].clock.now()).total_seconds())))
        return resp
    if outcome.status == LoginStatus.DISABLED:
        return _login_form(request, status=403, error=DISABLED, name=name)
    return _login_form(request, status=401, error=BAD_LOGIN, name=name)


async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].logout(principal(request))
    resp = web.HTTPSeeOther("/login?bye=1")
    cookies = request.app[COOKIES]
    cookies.clear(resp, cookies.session)
    raise resp


async def home(request: web.Request) -> web.StreamResponse:
    me = principal(request)
    return render(request, "home.html", title="值班台", abilities=abilities(me))
