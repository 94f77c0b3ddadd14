"""The console shell over HTTP: login form (with its own CSRF cookie), redirects, headers,
lock-out messages, logout."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from support.channel_stack import Stack, build_stack, stop_stack
from support.users import PASSWORD, add_user
from warnd.console.render import CSP
from warnd.console.views import safe_next


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await build_stack(db_url, tmp_path)
    await add_user(stack.engine.db, "zhang", "duty_officer", display_name="张伟")
    await add_user(stack.engine.db, "audit", "auditor")
    try:
        yield stack
    finally:
        await stop_stack(stack)


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, name
    return m.group(1)


async def login(st: Stack, name: str, password: str, next_: str = "/console") -> ClientResponse:
    page = await st.http.get(f"/login?next={next_}")
    html = await page.text()
    return await st.http.post("/login", allow_redirects=False, data={
        "name": name, "password": password, "csrf_token": hidden(html, "csrf_token"), "next": hidden(html, "next")})


def assert_strict_headers(r: ClientResponse) -> None:
    assert r.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"


async def test_root_sends_strangers_to_login_and_users_to_the_console(st: Stack) -> None:
    r = await st.http.get("/", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (302, "/login")
    r = await st.http.get("/console", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/login?next=/console")
    page = await st.http.get("/login")
    assert page.status == 200 and "登录" in await page.text()
    assert_strict_headers(page)
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # http base URL

    r = await login(st, "zhang", PASSWORD)
    assert (r.status, r.headers["Location"]) == (303, "/console")
    session_cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("warnd_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    home = await st.http.get("/console")
    html = await home.text()
    assert home.status == 200 and "张伟" in html and "值班员" in html and 'name="csrf-token"' in html
    assert "<script>" not in html and "style=" not in html  # nothing the CSP would block
    assert_strict_headers(home)
    r = await st.http.get("/", allow_redirects=False)
    assert r.headers["Location"] == "/console"
    r = await st.http.get("/login", allow_redirects=False)
    assert r.status == 302  # already logged in

    # Logout is a POST with the CSRF token; afterwards the cookie opens nothing.
    r = await st.http.post("/logout", allow_redirects=False)
    assert r.status == 403 and "刷新页面" in await r.text()
    r = await st.http.post("/logout", data={"csrf_token": hidden(html, "csrf_token")}, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/login?bye=1")
    r = await st.http.get("/console", allow_redirects=False)
    assert r.status == 303


async def test_login_form_needs_its_own_cookie_and_messages_are_chinese(st: Stack) -> None:
    r = await st.http.post("/login", data={"name": "zhang", "password": PASSWORD, "csrf_token": "x"})
    assert r.status == 403 and "登录页面已过期" in await r.text()
    r = await login(st, "zhang", "wrong-password")
    assert r.status == 401 and "登录名或密码错误" in await r.text()
    for _ in range(3):
        r = await login(st, "zhang", "wrong-password")
    r = await login(st, "zhang", "wrong-password")  # the 5th failure locks
    text = await r.text()
    assert r.status == 429 and "登录失败次数过多" in text and "北京时间" in text
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    r = await login(st, "zhang", PASSWORD)
    assert r.status == 429


async def test_auditor_sees_the_console_but_not_the_forbidden(st: Stack) -> None:
    assert (await login(st, "audit", PASSWORD)).status == 303
    home = await st.http.get("/console")
    html = await home.text()
    assert "审计" in html and "登记电话叫应" not in html
    r = await st.http.post("/api/v1/alerts/1/cancel", json={}, headers={"X-CSRF-Token": hidden(html, "csrf_token")})
    assert r.status == 403 and (await r.json())["permission"] == "alerts.cancel"


async def test_static_files_are_served_with_validators_and_nothing_else_is(st: Stack) -> None:
    r = await st.http.get("/static/console.css")
    assert r.status == 200 and r.content_type == "text/css" and r.headers["Cache-Control"] == "no-cache"
    etag = r.headers["ETag"]
    r = await st.http.get(f"/static/console.css?v={etag.strip(chr(34))}", headers={"If-None-Match": etag})
    assert r.status == 304 and "immutable" in r.headers["Cache-Control"]
    for bad in ("../render.py", "..%2Frender.py", "nope.css", "%2e%2e%2fviews.py"):
        r = await st.http.get(f"/static/{bad}")
        assert r.status == 404


@pytest.mark.parametrize(("given", "kept"), [
    ("/console", "/console"), ("/console?x=1", "/console?x=1"), ("", "/console"), (None, "/console"),
    ("//evil.example/", "/console"), ("https://evil.example/", "/console"), ("/\\evil.example", "/console"),
    ("javascript:alert(1)", "/console"), ("/a\nb", "/console"),
])
def test_next_stays_on_this_site(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept
