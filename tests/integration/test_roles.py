"""Every route of the application, called as every role and as nobody.

The test walks the aiohttp router, so a route added without a declared permission, or with a
permission and no example request here, fails it. For each declared route the expected status
follows from warnd/auth/permissions.py: 401 (or the login redirect) for nobody, 403 for a role
without the permission, the route's success status for a role with it — by personal token and
by console session (with its CSRF token). Public routes must answer everyone alike: the
middleware stays out of their way.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from channels.voice_twilio import TwilioVoice
from support.channel_stack import METRICS_TOKEN, TOKEN, Stack, build_stack, imminent, stop_stack
from support.users import PASSWORD, bearer, token_for
from warnd.api.app import make_app
from warnd.api.auth import ACCESS, AUTH, COOKIES, CSRF_HEADER, Public, all_declared
from warnd.auth.permissions import USER_ROLES, Role, allowed
from warnd.config import AuthCfg
from warnd.db.models import Call, Event
from warnd.engine.approvals import Person

SAFE = {"GET", "HEAD", "OPTIONS"}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Caller:
    """Someone calling a route: nobody, the machine token, or a user by token or session."""

    label: str
    role: Role | None  # None: anonymous
    headers: Callable[[], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class Example:
    permission: str  # what the route must declare
    request: Callable[[Stack], Awaitable[tuple[str, dict[str, Any]]]]  # -> path, request kwargs
    ok: int  # status for a caller who may


async def fresh_alert(st: Stack) -> int:
    r = await st.engine.ingestor.submit_cap(imminent(f"ROLE-{next(_ids)}"), source="test")
    return r.alert_id


async def open_call(st: Stack) -> int:
    alert_id = await fresh_alert(st)
    calls = await st.calls(alert_id)
    return int(next(c["id"] for c in calls.values() if c["state"] == "open"))


def fixed(path: str, **kw: Any) -> Callable[[Stack], Awaitable[tuple[str, dict[str, Any]]]]:
    async def make(st: Stack) -> tuple[str, dict[str, Any]]:
        return path.format(alert=st.extra["alert"], approval=st.extra.get("approval")), kw
    return make


async def pending_cancel(st: Stack) -> int:
    """A cancel asked for by someone who is none of the callers (so every approver may decide it)."""
    approval_id, _ = await st.engine.approvals.request_cancel(await fresh_alert(st), "雨停", Person("duty"))
    return approval_id


async def approve(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/approvals/{await pending_cancel(st)}/approve", {}


async def reject(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/approvals/{await pending_cancel(st)}/reject", {"json": {"note": "不同意"}}


COMPOSE_FORM = {"action": "preview", "hazard": "rainstorm", "colour": "yellow", "step": "warning", "hours": "6",
                "headline": "暴雨黄色预警", "instruction": "请做好防御准备。", "area": "431222100200"}


async def console_approve(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/console/approvals/{await pending_cancel(st)}/approve", {"data": {}}


async def console_reject(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/console/approvals/{await pending_cancel(st)}/reject", {"data": {"note": "不同意"}}


async def console_cancel(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/console/alerts/{await fresh_alert(st)}/cancel", {"data": {"reason": "雨停"}}


async def new_cap(st: Stack) -> tuple[str, dict[str, Any]]:
    return "/api/v1/alerts", {"data": imminent(f"ROLE-{next(_ids)}")}


async def cancel(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/alerts/{await fresh_alert(st)}/cancel", {"json": {"reason": "雨停"}}


async def ack(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/calls/{await open_call(st)}/ack", {"json": {"note": "电话联系本人，已收到"}}


async def subscription(st: Stack) -> tuple[str, dict[str, Any]]:
    return "/api/v1/public/subscriptions", {"json": {"phone": f"137{next(_ids):08d}", "region_code": "431222100200"}}
async def console_ack(st: Stack) -> tuple[str, dict[str, Any]]:
    return f"/console/calls/{await open_call(st)}/ack", {"data": {"note": "电话联系本人，已收到", "alert": "1"}}


async def board_chooser(st: Stack) -> tuple[str, dict[str, Any]]:
    await fresh_alert(st)  # two active warnings at least: the chooser lists them (one would redirect)
    return "/console/board", {}


# Every route that declares a permission needs an entry: (method, path pattern) -> example.
EXAMPLES: dict[tuple[str, str], Example] = {
    ("POST", "/api/v1/alerts"): Example("alerts.submit", new_cap, 201),
    ("GET", "/api/v1/alerts/{id}"): Example("alerts.read", fixed("/api/v1/alerts/{alert}"), 200),
    ("GET", "/api/v1/alerts/{id}/calls"): Example("calls.read", fixed("/api/v1/alerts/{alert}/calls"), 200),
    ("POST", "/api/v1/alerts/{id}/cancel"): Example("alerts.cancel", cancel, 202),  # waits for an approver
    ("GET", "/api/v1/approvals"): Example("console.view", fixed("/api/v1/approvals"), 200),
    ("GET", "/api/v1/approvals/{id}"): Example("console.view", fixed("/api/v1/approvals/{approval}"), 200),
    ("POST", "/api/v1/approvals/{id}/approve"): Example("alerts.approve", approve, 200),
    ("POST", "/api/v1/approvals/{id}/reject"): Example("alerts.approve", reject, 200),
    ("POST", "/api/v1/calls/{id}/ack"): Example("calls.ack", ack, 200),
    ("GET", "/api/v1/feeds"): Example("feeds.read", fixed("/api/v1/feeds"), 200),
    ("GET", "/console"): Example("console.view", fixed("/console"), 200),
    ("GET", "/console/compose"): Example("alerts.compose", fixed("/console/compose"), 200),
    ("POST", "/console/compose"): Example("alerts.compose", fixed("/console/compose", data=COMPOSE_FORM), 200),
    ("GET", "/console/approvals"): Example("console.view", fixed("/console/approvals"), 200),
    ("GET", "/console/approvals/{id}"): Example("console.view", fixed("/console/approvals/{approval}"), 200),
    ("POST", "/console/approvals/{id}/approve"): Example("alerts.approve", console_approve, 303),
    ("POST", "/console/approvals/{id}/reject"): Example("alerts.approve", console_reject, 303),
    ("POST", "/console/alerts/{id}/cancel"): Example("alerts.cancel", console_cancel, 303),
    ("POST", "/logout"): Example("console.view", fixed("/logout"), 303),
    ("GET", "/api/v1/public/recipients"): Example("public.read", fixed("/api/v1/public/recipients"), 200),
    ("GET", "/api/v1/public/recipients.csv"): Example("public.phones", fixed("/api/v1/public/recipients.csv"), 200),
    ("POST", "/api/v1/public/subscriptions"): Example("public.manage", subscription, 201),
    ("POST", "/api/v1/public/unsubscribe"): Example("public.manage", fixed(
        "/api/v1/public/unsubscribe", json={"phone": "13700000001"}), 200),
    ("GET", "/metrics"): Example("metrics.read", fixed("/metrics"), 200),
    ("GET", "/api/v1/alerts"): Example("alerts.read", fixed("/api/v1/alerts?per_page=5&kind=real"), 200),
    ("GET", "/console/alerts"): Example("alerts.read", fixed("/console/alerts"), 200),
    ("GET", "/console/alerts/{id}"): Example("calls.read", fixed("/console/alerts/{alert}"), 200),
    ("GET", "/console/alerts/{id}/stream"): Example("calls.read", fixed("/console/alerts/{alert}/stream?once=1"), 200),
    ("GET", "/console/board"): Example("calls.read", board_chooser, 200),
    ("POST", "/console/calls/{id}/ack"): Example("calls.ack", console_ack, 303),
    ("GET", "/console/alarms"): Example("console.view", fixed("/console/alarms"), 200),
    ("GET", "/console/alarms/stream"): Example("console.view", fixed("/console/alarms/stream?once=1"), 200),
    ("GET", "/console/health"): Example("feeds.read", fixed("/console/health"), 200),
    ("GET", "/console/readiness"): Example("console.view", fixed("/console/readiness"), 200),
    ("GET", "/console/reports"): Example("reports.read", fixed("/console/reports?alert={alert}"), 200),
    ("GET", "/console/reports/view"): Example("reports.read", fixed("/console/reports/view?alert={alert}"), 200),
    ("GET", "/console/reports/download/{fmt}"): Example(
        "reports.read", fixed("/console/reports/download/xlsx?from=2020-01-01T00:00&to=2020-01-02T00:00"), 200),
}

# Public routes get a plausible request; they must answer every caller the same way.
class PublicFill(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x" * 24  # any other path parameter (a webhook's secret segment, ...)


PUBLIC_FILL = PublicFill(token="A" * 32, source="no-such-source", name="console.css")


def voice(base: str, twilio: Any) -> dict[str, TwilioVoice]:
    return {"voice": TwilioVoice(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                 from_number="+15005550006", public_base_url=base, api_base_url=twilio.base_url)}


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await build_stack(db_url, tmp_path, channels=voice)
    stack.extra["alert"] = await fresh_alert(stack)
    stack.extra["approval"] = await pending_cancel(stack)
    try:
        yield stack
    finally:
        await stop_stack(stack)


async def callers(st: Stack) -> list[Caller]:
    app = st.http.server.app
    assert app is not None
    auth, cookie = app[AUTH], app[COOKIES].session
    out = [Caller("anonymous", None, _const({})), Caller("api-token", Role.MACHINE, _const(bearer(TOKEN))),
           Caller("metrics-token", Role.METRICS, _const(bearer(METRICS_TOKEN)))]
    for role in USER_ROLES:
        out.append(Caller(f"{role.value} by token", role, _const(bearer(await token_for(st.engine.db, f"t-{role}", role)))))
        await token_for(st.engine.db, f"s-{role}", role)

        async def session(name: str = f"s-{role}", held: dict[str, str] = {}) -> dict[str, str]:  # noqa: B006
            # Log in again only when the last request ended the session (POST /logout).
            if not held or await auth.session(held["token"]) is None:
                login = await auth.login(name, PASSWORD, "127.0.0.9")
                assert login.session_token and login.principal and login.principal.csrf
                held.update(token=login.session_token, csrf=login.principal.csrf)
            return {"Cookie": f"{cookie}={held['token']}", CSRF_HEADER: held["csrf"]}

        out.append(Caller(f"{role.value} by session", role, session))
    return out


def _const(h: dict[str, str]) -> Callable[[], Awaitable[dict[str, str]]]:
    async def get() -> dict[str, str]:
        return dict(h)
    return get


def expected(caller: Caller, example: Example, method: str, path: str) -> int:
    if caller.role is None:
        machine = path.startswith("/api/") or path == "/metrics"  # refused with a 401, not the login page
        return 303 if method in SAFE and not machine else 401
    return example.ok if allowed(caller.role, example.permission) else 403


async def call(st: Stack, method: str, path: str, headers: dict[str, str], kw: dict[str, Any]) -> int:
    st.http.session.cookie_jar.clear()
    async with st.http.request(method, path, headers=headers, allow_redirects=False, **kw) as r:
        await r.read()
        return r.status


async def test_every_route_as_every_role(st: Stack) -> None:
    app = st.http.server.app
    assert app is not None
    access = app[ACCESS]
    who = await callers(st)
    seen, problems = set(), []
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        method, pattern = route.method, resource.canonical
        rule = access.rule(route)
        if rule is None:
            problems.append(f"{method} {pattern}: no declared permission")
            continue
        if isinstance(rule, Public):
            path = pattern.format_map(PUBLIC_FILL)
            statuses = {c.label: await call(st, method, path, await c.headers(), {}) for c in who}
            if rule.session:  # /, /login: a logged-in console user is sent on, everyone else alike
                statuses = {k: v for k, v in statuses.items() if not k.endswith("by session")}
            assert len(set(statuses.values())) == 1, f"{method} {pattern} (public) answers differently: {statuses}"
            assert next(iter(statuses.values())) < 500, f"{method} {pattern}: {statuses}"
            seen.add((method, pattern))
            continue
        example = EXAMPLES.get(("GET" if method == "HEAD" else method, pattern))
        if example is None:
            problems.append(f"{method} {pattern} declares {rule!r} but has no example request in EXAMPLES")
            continue
        if example.permission != rule:
            problems.append(f"{method} {pattern} declares {rule!r}, expected {example.permission!r}")
            continue
        for c in who:
            path, kw = await example.request(st)
            got = await call(st, method, path, await c.headers(), kw)
            want = expected(c, example, method, path)
            if got != want:
                problems.append(f"{method} {path} as {c.label}: {got}, expected {want}")
        seen.add((method, pattern))
    assert problems == []
    # The walk really covered the API, the console and the public pages.
    assert {("POST", "/api/v1/calls/{id}/ack"), ("POST", "/api/v1/alerts/{id}/cancel"), ("GET", "/console"),
            ("POST", "/c/{token}"), ("GET", "/login"), ("HEAD", "/api/v1/alerts/{id}"), ("GET", "/api/v1/alerts"),
            ("GET", "/console/alerts/{id}"), ("POST", "/console/calls/{id}/ack"),
            ("GET", "/console/reports/download/{fmt}")} <= seen
    assert set(EXAMPLES) <= {(m, p) for m, p in seen}


async def test_a_route_without_a_declaration_is_refused_and_stops_startup(st: Stack) -> None:
    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="open")

    app = make_app(st.engine)
    app.router.add_get("/api/v1/sneaky", sneaky)
    client = TestClient(TestServer(app))
    with pytest.raises(RuntimeError, match="GET /api/v1/sneaky"):
        await client.start_server()
    await client.close()

    # Even if it were served, the middleware refuses it to everyone.
    app = make_app(st.engine)
    app.router.add_get("/api/v1/sneaky", sneaky)
    app.on_startup.remove(all_declared)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        for headers in ({}, bearer(TOKEN), bearer(await token_for(st.engine.db, "adm", Role.ADMIN))):
            r = await client.get("/api/v1/sneaky", headers=headers)
            assert r.status == 403 and "open" not in await r.text()
    finally:
        await client.close()


async def test_a_session_post_without_its_csrf_token_changes_nothing(st: Stack) -> None:
    app = st.http.server.app
    assert app is not None
    await token_for(st.engine.db, "csrf-officer", Role.DUTY_OFFICER)
    login = await app[AUTH].login("csrf-officer", PASSWORD, "127.0.0.9")
    cookie = {"Cookie": f"{app[COOKIES].session}={login.session_token}"}
    call_id = await open_call(st)
    for headers in (cookie, {**cookie, CSRF_HEADER: "0" * 64}):
        status = await call(st, "POST", f"/api/v1/calls/{call_id}/ack", headers, {"json": {"note": "x"}})
        assert status == 403
    async with st.engine.db.read() as s:
        assert (await s.get(Call, call_id)).state == "open"  # type: ignore[union-attr]
    # The same request with the token goes through, and the event names the officer.
    assert login.principal is not None and login.principal.csrf is not None
    status = await call(st, "POST", f"/api/v1/calls/{call_id}/ack", {**cookie, CSRF_HEADER: login.principal.csrf},
                        {"json": {"note": "电话联系本人"}})
    assert status == 200
    async with st.engine.db.read() as s:
        ev = (await s.exec(select(Event).where(Event.kind == "call_confirmed", Event.call_id == call_id))).one()
    assert ev.data["actor"] == "csrf-officer" and ev.data["via"] == "duty_officer"


def test_auth_settings_defaults_are_sane() -> None:
    cfg = AuthCfg()
    assert cfg.lockout_failures < cfg.lockout_address_failures
    assert cfg.session_idle_minutes < cfg.session_max_hours * 60
