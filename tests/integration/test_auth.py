"""Accounts, password logins, lock-out, sessions and API tokens against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, col, select

from support.users import PASSWORD
from warnd.auth.credentials import token_hash
from warnd.auth.permissions import MACHINE_ACTOR, Role
from warnd.auth.service import AuthError, AuthService, LoginStatus
from warnd.clock import ManualClock
from warnd.config import AuthCfg
from warnd.db.engine import Database
from warnd.db.models import ApiToken, Event, User, UserSession

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
CFG = AuthCfg(session_idle_minutes=30, session_max_hours=8, lockout_failures=3,
              lockout_address_failures=6, lockout_minutes=15)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def auth(db: Database, clock: ManualClock) -> AuthService:
    svc = AuthService(db, CFG, machine_tokens=("machine-token-0123456789",), clock=clock)
    await svc.add_user("Zhang", "duty_officer", PASSWORD, "张伟", actor="cli:root")
    return svc


async def events(db: Database, *kinds: str) -> list[Event]:
    async with db.read() as s:
        return list((await s.exec(select(Event).where(col(Event.kind).in_(kinds)).order_by(col(Event.id)))).all())


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata))
    assert diff == []


async def test_password_is_stored_as_argon2id_and_login_opens_a_session(auth: AuthService, db: Database) -> None:
    async with db.read() as s:
        user = (await s.exec(select(User))).one()
    assert user.name == "zhang" and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    out = await auth.login(" ZHANG ", PASSWORD, "10.0.0.5", "Firefox")
    assert out.status == LoginStatus.OK and out.session_token and out.principal
    assert out.principal.name == "zhang" and out.principal.role == Role.DUTY_OFFICER
    async with db.read() as s:
        sess = (await s.exec(select(UserSession))).one()
    assert sess.token_hash == token_hash(out.session_token) and out.session_token not in sess.token_hash
    who = await auth.session(out.session_token)
    assert who is not None and who.csrf == out.principal.csrf and who.display_name == "张伟"
    [added, login] = await events(db, "user_added", "login")
    assert added.data["actor"] == "cli:root" and added.data["role"] == "duty_officer"
    assert login.data["actor"] == "zhang" and login.data["client_addr"] == "10.0.0.5"


async def test_sessions_end_when_idle_too_old_logged_out_or_user_disabled(
        auth: AuthService, clock: ManualClock, db: Database) -> None:
    token = (await auth.login("zhang", PASSWORD, "a")).session_token
    assert token
    for _ in range(16):  # used every 29 minutes: stays alive for 7 h 44 min
        await clock.advance(timedelta(minutes=29))
        assert await auth.session(token) is not None
    await clock.advance(timedelta(minutes=29))  # past the 8-hour limit, though not idle
    assert await auth.session(token) is None

    idle = (await auth.login("zhang", PASSWORD, "a")).session_token
    assert idle
    await clock.advance(timedelta(minutes=30))
    assert await auth.session(idle) is None

    out = await auth.login("zhang", PASSWORD, "a")
    assert out.session_token and out.principal
    await auth.logout(out.principal)
    assert await auth.session(out.session_token) is None
    assert (await events(db, "logout"))[0].data["actor"] == "zhang"

    live = (await auth.login("zhang", PASSWORD, "a")).session_token
    assert live and await auth.session(live)
    await auth.disable_user("zhang", actor="cli:root")
    assert await auth.session(live) is None
    assert (await auth.login("zhang", PASSWORD, "a")).status == LoginStatus.DISABLED
    assert await auth.session("not-a-token") is None and await auth.session("") is None


async def test_account_locks_after_repeated_failures_and_the_lock_does_not_grow(
        auth: AuthService, clock: ManualClock, db: Database) -> None:
    assert (await auth.login("zhang", "wrong-1", "10.0.0.1")).status == LoginStatus.BAD
    await clock.advance(timedelta(minutes=1))
    assert (await auth.login("zhang", "wrong-2", "10.0.0.2")).status == LoginStatus.BAD
    await clock.advance(timedelta(minutes=1))
    third = await auth.login("zhang", "wrong-3", "10.0.0.3")  # from three addresses: per account
    assert third.status == LoginStatus.ACCOUNT_LOCKED and third.locked_until == T0 + timedelta(minutes=15)
    # The right password does not get in while locked, and trying does not extend the lock.
    await clock.advance(timedelta(minutes=10))
    assert (await auth.login("zhang", PASSWORD, "10.0.0.1")).status == LoginStatus.ACCOUNT_LOCKED
    await clock.advance(timedelta(minutes=3, seconds=1))  # 15 min after the first failure
    assert (await auth.login("zhang", PASSWORD, "10.0.0.1")).status == LoginStatus.OK
    locked = await events(db, "login_locked")
    assert [(e.data["scope"], e.data["user"]) for e in locked] == [("account", "zhang")]
    assert len(await events(db, "login_failed")) == 3 and len(await events(db, "login_refused")) == 1
    # A success clears the count: two more failures do not lock.
    for _ in range(2):
        assert (await auth.login("zhang", "nope-nope", "10.0.0.1")).status == LoginStatus.BAD


async def test_unknown_names_lock_alike_and_unlock_lifts_a_lock(auth: AuthService) -> None:
    for _ in range(2):
        assert (await auth.login("nobody", "x" * 12, "10.0.0.1")).status == LoginStatus.BAD
    assert (await auth.login("nobody", "x" * 12, "10.0.0.1")).status == LoginStatus.ACCOUNT_LOCKED
    for _ in range(3):
        await auth.login("zhang", "bad-password", "10.0.0.2")
    assert (await auth.login("zhang", PASSWORD, "10.0.0.2")).status == LoginStatus.ACCOUNT_LOCKED
    assert await auth.unlock("zhang", actor="cli:root") == 3
    assert (await auth.login("zhang", PASSWORD, "10.0.0.2")).status == LoginStatus.OK


async def test_one_address_trying_many_names_is_blocked(auth: AuthService, clock: ManualClock, db: Database) -> None:
    for i in range(5):
        assert (await auth.login(f"guess{i}", "password-x", "10.9.9.9")).status == LoginStatus.BAD
    out = await auth.login("guess5", "password-x", "10.9.9.9")
    assert out.status == LoginStatus.ADDRESS_LOCKED
    # Blocked even for a real account with its password; another address is not.
    assert (await auth.login("zhang", PASSWORD, "10.9.9.9")).status == LoginStatus.ADDRESS_LOCKED
    assert (await auth.login("zhang", PASSWORD, "10.0.0.1")).status == LoginStatus.OK
    await clock.advance(timedelta(minutes=15, seconds=1))
    assert (await auth.login("zhang", PASSWORD, "10.9.9.9")).status == LoginStatus.OK
    assert [e.data["scope"] for e in await events(db, "login_locked")] == ["address"]


async def test_personal_tokens_carry_the_role_and_can_be_revoked_or_expire(
        auth: AuthService, clock: ManualClock, db: Database) -> None:
    token, row = await auth.create_token("zhang", "值班脚本", days=30, actor="cli:root")
    assert token.startswith("wdt_")
    async with db.read() as s:
        stored = (await s.exec(select(ApiToken))).one()
    assert stored.token_hash == token_hash(token) and token not in stored.token_hash
    who = await auth.bearer(token)
    assert who is not None and (who.name, who.role, who.via) == ("zhang", Role.DUTY_OFFICER, "token")
    assert who.csrf is None  # bearer requests are not CSRF-able
    await clock.advance(timedelta(days=30))
    assert await auth.bearer(token) is None

    again, row = await auth.create_token("zhang", actor="cli:root")
    assert await auth.bearer(again) is not None
    assert row.id is not None
    await auth.revoke_token(row.id, actor="cli:root")
    assert await auth.bearer(again) is None
    with pytest.raises(AuthError):
        await auth.revoke_token(row.id)
    assert await auth.bearer("wdt_" + "A" * 43) is None and await auth.bearer("") is None

    machine = await auth.bearer("machine-token-0123456789")
    assert machine is not None and (machine.name, machine.role) == (MACHINE_ACTOR, Role.MACHINE)
    kinds = [e.kind for e in await events(db, "token_created", "token_revoked")]
    assert kinds == ["token_created", "token_created", "token_revoked"]


async def test_disabling_revokes_tokens_and_new_password_ends_sessions(auth: AuthService) -> None:
    token, _ = await auth.create_token("zhang")
    session = (await auth.login("zhang", PASSWORD, "a")).session_token
    assert session
    await auth.set_password("zhang", "another-long-password")
    assert await auth.session(session) is None
    assert (await auth.login("zhang", PASSWORD, "a")).status == LoginStatus.BAD
    assert (await auth.login("zhang", "another-long-password", "a")).status == LoginStatus.OK
    await auth.disable_user("zhang")
    assert await auth.bearer(token) is None
    with pytest.raises(AuthError, match="disabled"):
        await auth.create_token("zhang")
    [u] = await auth.list_users()
    assert (u.name, u.active, u.tokens) == ("zhang", False, 0)


@pytest.mark.parametrize(("name", "role", "password", "why"), [
    ("li", "superuser", PASSWORD, "role"),
    ("a", "auditor", PASSWORD, "user name"),
    ("api-token", "auditor", PASSWORD, "user name"),
    ("li si", "auditor", PASSWORD, "user name"),
    ("li", "auditor", "short", "at least"),
    ("lisi-admin", "admin", "lisi-admin", "user name"),
    ("zhang", "auditor", PASSWORD, "already exists"),
])
async def test_bad_accounts_are_refused(auth: AuthService, name: str, role: str, password: str, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        await auth.add_user(name, role, password)
    assert [u.name for u in await auth.list_users()] == ["zhang"]
