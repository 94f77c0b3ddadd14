"""Users, logins, sessions and API tokens against the database.

Auth runs on wall-clock time (a SystemClock unless a test injects one): a drill on a scaled
clock must not expire sessions in seconds. Every change is written to the event log with the
actor who made it ("cli:<os user>" for the command line).
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.auth import credentials as cred
from warnd.auth.permissions import MACHINE_ACTOR, METRICS_ACTOR, USER_ROLES, Role
from warnd.clock import Clock, SystemClock
from warnd.config import AuthCfg
from warnd.db.engine import Database
from warnd.db.models import ApiToken, LoginAttempt, User, UserSession
from warnd.engine import events

log = structlog.get_logger("warnd.auth")

NAME_RE = re.compile(r"^[\w.-]{2,64}$")  # \w: pinyin or Chinese names both work
TOUCH_INTERVAL = timedelta(seconds=60)  # last_seen_at/last_used_at are written at most this often
RESERVED_NAMES = {MACHINE_ACTOR, METRICS_ACTOR, "cli", "system", "anonymous"}


class AuthError(ValueError):
    """A refused account operation (CLI): the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is making a request. `name` is what the event log records as the actor."""

    name: str
    role: Role
    via: str  # "session" | "token" (personal) | "api-token" (shared config token) | "metrics-token"
    user_id: int | None = None
    display_name: str = ""
    session_id: int | None = None
    csrf: str | None = None  # sessions only: the token every state-changing request must carry

    @property
    def shown_name(self) -> str:
        return self.display_name or self.name


class LoginStatus(enum.StrEnum):
    OK = "ok"
    BAD = "bad"  # wrong name or password (never says which)
    DISABLED = "disabled"  # right password, disabled account
    ACCOUNT_LOCKED = "account_locked"
    ADDRESS_LOCKED = "address_locked"


@dataclass(frozen=True)
class LoginOutcome:
    status: LoginStatus
    session_token: str | None = None
    principal: Principal | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    display_name: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None
    tokens: int  # usable personal tokens


def normalise_name(name: str) -> str:
    return name.strip().casefold()


class AuthService:
    def __init__(self, db: Database, cfg: AuthCfg, machine_tokens: tuple[str, ...] = (),
                 clock: Clock | None = None, metrics_tokens: tuple[str, ...] = ()):
        self.db, self.cfg = db, cfg
        self.machine_tokens = tuple(t for t in machine_tokens if t)
        self.metrics_tokens = tuple(t for t in metrics_tokens if t)
        self.clock: Clock = clock or SystemClock()

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.cfg.session_idle_minutes)

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.cfg.lockout_minutes)

    # --- accounts ---------------------------------------------------------------------------
    async def add_user(self, name: str, role: str, password: str, display_name: str = "",
                       actor: str = "cli") -> User:
        name = normalise_name(name)
        if not NAME_RE.match(name) or name in RESERVED_NAMES:
            raise AuthError(f"user name {name!r}: use 2-64 letters, digits, '.', '_' or '-' "
                            f"(not {', '.join(sorted(RESERVED_NAMES))})")
        if role not in {r.value for r in USER_ROLES}:
            raise AuthError(f"role {role!r}: one of {', '.join(r.value for r in USER_ROLES)}")
        try:
            cred.check_password_rules(password, name)
        except cred.PasswordRejected as e:
            raise AuthError(str(e)) from None
        hashed = await asyncio.to_thread(cred.hash_password, password)
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            if (await s.exec(select(User.id).where(User.name == name))).first() is not None:
                raise AuthError(f"user {name!r} already exists")
            user = User(name=name, display_name=display_name.strip()[:64], role=role, password_hash=hashed,
                        created_at=now, password_changed_at=now)
            s.add(user)
            await s.flush()
            events.record(s, now, "user_added", user=name, user_id=user.id, role=role, actor=actor)
        return user

    async def set_password(self, name: str, password: str, actor: str = "cli") -> None:
        name = normalise_name(name)
        try:
            cred.check_password_rules(password, name)
        except cred.PasswordRejected as e:
            raise AuthError(str(e)) from None
        hashed = await asyncio.to_thread(cred.hash_password, password)
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            user = await self._user(s, name)
            user.password_hash, user.password_changed_at = hashed, now
            # A new password ends every open session (a stolen one included).
            await s.exec(update(UserSession).where(
                col(UserSession.user_id) == user.id, col(UserSession.ended_at).is_(None)).values(ended_at=now))
            events.record(s, now, "user_password_set", user=name, user_id=user.id, actor=actor)

    async def disable_user(self, name: str, actor: str = "cli") -> None:
        name = normalise_name(name)
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            user = await self._user(s, name)
            if not user.active:
                raise AuthError(f"user {name!r} is already disabled")
            user.active, user.disabled_at = False, now
            ended = await s.exec(update(UserSession).where(
                col(UserSession.user_id) == user.id, col(UserSession.ended_at).is_(None)).values(ended_at=now))
            revoked = await s.exec(update(ApiToken).where(
                col(ApiToken.user_id) == user.id, col(ApiToken.revoked_at).is_(None)).values(revoked_at=now))
            events.record(s, now, "user_disabled", user=name, user_id=user.id, actor=actor,
                          sessions_ended=ended.rowcount, tokens_revoked=revoked.rowcount)

    async def unlock(self, name: str, actor: str = "cli") -> int:
        """Forget the account's failed logins (the per-address count stays). Returns how many."""
        name = normalise_name(name)
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            res = await s.exec(delete(LoginAttempt).where(col(LoginAttempt.name) == name))
            events.record(s, now, "user_unlocked", user=name, failures_cleared=res.rowcount, actor=actor)
        return int(res.rowcount or 0)

    async def list_users(self) -> list[UserInfo]:
        now = self.clock.now()
        async with self.db.read() as s:
            users = (await s.exec(select(User).order_by(col(User.name)))).all()
            counts = dict((await s.exec(select(ApiToken.user_id, func.count()).where(
                col(ApiToken.revoked_at).is_(None),
                (col(ApiToken.expires_at).is_(None)) | (col(ApiToken.expires_at) > now),
            ).group_by(col(ApiToken.user_id)))).all())
        return [UserInfo(u.id or 0, u.name, u.display_name, u.role, u.active, u.created_at, u.last_login_at,
                         int(counts.get(u.id or 0, 0))) for u in users]

    async def create_token(self, name: str, label: str = "", days: float | None = 365,
                           actor: str = "cli") -> tuple[str, ApiToken]:
        """A new personal token; the plain value is returned here and never again."""
        name = normalise_name(name)
        token = cred.new_api_token()
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            user = await self._user(s, name)
            if not user.active:
                raise AuthError(f"user {name!r} is disabled")
            row = ApiToken(token_hash=cred.token_hash(token), user_id=user.id or 0, label=label.strip()[:64],
                           created_at=now, expires_at=now + timedelta(days=days) if days else None)
            s.add(row)
            await s.flush()
            events.record(s, now, "token_created", user=name, user_id=user.id, token_id=row.id,
                          label=row.label, expires_at=row.expires_at.isoformat() if row.expires_at else None,
                          actor=actor)
        return token, row

    async def revoke_token(self, token_id: int, actor: str = "cli") -> None:
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            row = await s.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                raise AuthError(f"no usable token with id {token_id}")
            row.revoked_at = now
            events.record(s, now, "token_revoked", user_id=row.user_id, token_id=token_id, actor=actor)

    @staticmethod
    async def _user(s: AsyncSession, name: str) -> User:
        user = (await s.exec(select(User).where(User.name == name))).first()
        if user is None:
            raise AuthError(f"no user {name!r}")
        return user

    # --- password login ---------------------------------------------------------------------
    async def login(self, name: str, password: str, client_addr: str, user_agent: str = "") -> LoginOutcome:
        name = normalise_name(name)[:64]
        client_addr = client_addr[:64]
        now = self.clock.now()
        since = now - self.window
        async with self.db.read() as s:
            by_addr = (await s.exec(select(LoginAttempt.at).where(
                LoginAttempt.client_addr == client_addr, col(LoginAttempt.at) > since,
            ).order_by(col(LoginAttempt.at).desc()).limit(self.cfg.lockout_address_failures))).all()
            by_name = (await s.exec(select(LoginAttempt.at).where(
                LoginAttempt.name == name, col(LoginAttempt.at) > since,
            ).order_by(col(LoginAttempt.at).desc()).limit(self.cfg.lockout_failures))).all()
            user = (await s.exec(select(User).where(User.name == name))).first()
        # While locked, attempts are refused unchecked and not counted: the lock does not grow,
        # so nobody can keep an officer locked out through a whole storm by guessing.
        if len(by_addr) >= self.cfg.lockout_address_failures:
            return await self._refused(LoginStatus.ADDRESS_LOCKED, name, client_addr, by_addr[-1] + self.window, now)
        if len(by_name) >= self.cfg.lockout_failures:
            return await self._refused(LoginStatus.ACCOUNT_LOCKED, name, client_addr, by_name[-1] + self.window, now)
        ok = await asyncio.to_thread(cred.verify_password, user.password_hash if user else None, password)
        if not ok or user is None:
            return await self._failed(name, client_addr, by_name, by_addr, now)
        if not user.active:
            async with self.db.session() as s, s.begin():
                events.record(s, now, "login_refused", user=name, client_addr=client_addr, reason="disabled")
            return LoginOutcome(LoginStatus.DISABLED)
        rehash = await asyncio.to_thread(cred.hash_password, password) if cred.needs_rehash(user.password_hash) else None
        token = cred.new_session_token()
        async with self.db.session() as s, s.begin():
            row = UserSession(token_hash=cred.token_hash(token), user_id=user.id or 0, created_at=now,
                              last_seen_at=now, expires_at=now + timedelta(hours=self.cfg.session_max_hours),
                              client_addr=client_addr, user_agent=user_agent[:256])
            s.add(row)
            await s.exec(update(User).where(col(User.id) == user.id).values(
                last_login_at=now, **({"password_hash": rehash} if rehash else {})))
            await s.exec(delete(LoginAttempt).where(col(LoginAttempt.name) == name))
            await s.flush()
            events.record(s, now, "login", user=name, user_id=user.id, role=user.role, session_id=row.id,
                          client_addr=client_addr, actor=name)
        principal = Principal(name, Role(user.role), "session", user.id, user.display_name, row.id,
                              cred.csrf_for(token))
        return LoginOutcome(LoginStatus.OK, token, principal)

    async def _failed(self, name: str, addr: str, by_name: Sequence[datetime], by_addr: Sequence[datetime],
                      now: datetime) -> LoginOutcome:
        name_count, addr_count = len(by_name) + 1, len(by_addr) + 1
        async with self.db.session() as s, s.begin():
            s.add(LoginAttempt(name=name, client_addr=addr, at=now))
            # Rows older than the window no longer count for anything.
            await s.exec(delete(LoginAttempt).where(col(LoginAttempt.at) < now - 2 * self.window))
            events.record(s, now, "login_failed", user=name, client_addr=addr, failures=name_count)
            if addr_count >= self.cfg.lockout_address_failures:
                until = _oldest_of_latest([*by_addr, now], self.cfg.lockout_address_failures) + self.window
                events.record(s, now, "login_locked", scope="address", client_addr=addr, user=name,
                              until=until.isoformat())
                log.warning("login address locked", client_addr=addr, until=until.isoformat())
                return LoginOutcome(LoginStatus.ADDRESS_LOCKED, locked_until=until)
            if name_count >= self.cfg.lockout_failures:
                until = _oldest_of_latest([*by_name, now], self.cfg.lockout_failures) + self.window
                events.record(s, now, "login_locked", scope="account", user=name, client_addr=addr,
                              until=until.isoformat())
                log.warning("login account locked", user=name, client_addr=addr, until=until.isoformat())
                return LoginOutcome(LoginStatus.ACCOUNT_LOCKED, locked_until=until)
        return LoginOutcome(LoginStatus.BAD)

    async def _refused(self, status: LoginStatus, name: str, addr: str, until: datetime,
                       now: datetime) -> LoginOutcome:
        async with self.db.session() as s, s.begin():
            events.record(s, now, "login_refused", user=name, client_addr=addr, reason=status.value,
                          until=until.isoformat())
        return LoginOutcome(status, locked_until=until)

    # --- sessions and tokens ----------------------------------------------------------------
    async def session(self, token: str) -> Principal | None:
        """The live session for a cookie value, or None (unknown, ended, idle, too old, or the
        user was disabled)."""
        if not token or len(token) > 128:
            return None
        now = self.clock.now()
        async with self.db.read() as s:
            found = (await s.exec(select(UserSession, User).join(User, col(User.id) == UserSession.user_id).where(
                UserSession.token_hash == cred.token_hash(token)))).first()
        if found is None:
            return None
        sess, user = found
        if (sess.ended_at is not None or now >= sess.expires_at or now >= sess.last_seen_at + self.idle
                or not user.active):
            return None
        if now - sess.last_seen_at >= TOUCH_INTERVAL:
            async with self.db.session() as s, s.begin():
                await s.exec(update(UserSession).where(col(UserSession.id) == sess.id).values(
                    last_seen_at=now))
        return Principal(user.name, Role(user.role), "session", user.id, user.display_name, sess.id,
                         cred.csrf_for(token))

    async def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            return
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            await s.exec(update(UserSession).where(
                col(UserSession.id) == principal.session_id, col(UserSession.ended_at).is_(None)).values(ended_at=now))
            events.record(s, now, "logout", user=principal.name, user_id=principal.user_id,
                          session_id=principal.session_id, actor=principal.name)

    async def bearer(self, token: str) -> Principal | None:
        """A shared config token (the machine pseudo-user) or a personal token, else None."""
        if not token or len(token) > 256:
            return None
        if any(cred.same(token, t) for t in self.machine_tokens):
            return Principal(MACHINE_ACTOR, Role.MACHINE, "api-token")
        if any(cred.same(token, t) for t in self.metrics_tokens):
            return Principal(METRICS_ACTOR, Role.METRICS, "metrics-token")
        if not token.startswith(cred.TOKEN_PREFIX):
            return None
        now = self.clock.now()
        async with self.db.read() as s:
            found = (await s.exec(select(ApiToken, User).join(User, col(User.id) == ApiToken.user_id).where(
                ApiToken.token_hash == cred.token_hash(token)))).first()
        if found is None:
            return None
        row, user = found
        if row.revoked_at is not None or (row.expires_at is not None and now >= row.expires_at) or not user.active:
            return None
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
            async with self.db.session() as s, s.begin():
                await s.exec(update(ApiToken).where(col(ApiToken.id) == row.id).values(
                    last_used_at=now))
        return Principal(user.name, Role(user.role), "token", user.id, user.display_name)


def _oldest_of_latest(times: Sequence[datetime], n: int) -> datetime:
    """The lock lasts `window` from the oldest of the `n` failures that caused it."""
    return sorted(times)[-n:][0]
