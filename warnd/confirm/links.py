"""Signed confirm links: unguessable single-purpose tokens bound to one call.

A token is 24 random bytes (192 bits, URL-safe base64, 32 characters). The database keeps
only its SHA-256, so reading the database (a backup, a support dump) does not let anyone
confirm. A token is bound to one call and one recipient, has one purpose ("confirm": the
link in a message; "feedback": the 反馈 form shown after 收到), works once, and expires with
the warning (the alert's CAP `expires`, else `default_ttl` after it was issued).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.db.models import Alert, ConfirmLink

TOKEN_BYTES = 24  # 192 bits (the issue asks for at least 128)
CONFIRM, FEEDBACK = "confirm", "feedback"
LINK_PATH = "/c/"  # {public_base_url}/c/{token}
FEEDBACK_PATH = "/f/"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", errors="replace")).hexdigest()


def plausible(token: str) -> bool:
    """Cheap shape check before touching the database (32 URL-safe base64 characters)."""
    return len(token) == 32 and all(c.isascii() and (c.isalnum() or c in "-_") for c in token)


class LinkIssuer:
    def __init__(self, public_base_url: str, default_ttl: timedelta = timedelta(hours=24)):
        self.base = public_base_url.rstrip("/")
        self.default_ttl = default_ttl

    def url(self, token: str, purpose: str = CONFIRM) -> str:
        return self.base + (LINK_PATH if purpose == CONFIRM else FEEDBACK_PATH) + token

    def expiry(self, alert: Alert, now: datetime) -> datetime:
        """Links die with the warning; a warning without `expires` gets default_ttl."""
        return alert.expires if alert.expires is not None else now + self.default_ttl

    def row(self, *, call_id: int, alert_id: int, person_id: int, expires_at: datetime, now: datetime,
            purpose: str = CONFIRM) -> tuple[str, dict[str, Any]]:
        """A new token and the row to insert for it (bulk paths collect the rows)."""
        token = new_token()
        return token, dict(token_hash=token_hash(token), purpose=purpose, call_id=call_id, alert_id=alert_id,
                           person_id=person_id, expires_at=expires_at, created_at=now, used_at=None)

    async def issue(self, s: AsyncSession, *, call_id: int, alert_id: int, person_id: int,
                    expires_at: datetime, now: datetime, purpose: str = CONFIRM) -> str:
        """Store a token in the caller's transaction; returns its URL."""
        token, row = self.row(call_id=call_id, alert_id=alert_id, person_id=person_id,
                              expires_at=expires_at, now=now, purpose=purpose)
        await (await s.connection()).execute(insert(ConfirmLink).values(row))
        return self.url(token, purpose)

    async def insert_rows(self, s: AsyncSession, rows: list[dict[str, Any]]) -> None:
        if rows:
            await (await s.connection()).execute(insert(ConfirmLink), rows)
