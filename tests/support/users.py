"""Console/API users for tests: real rows through the real AuthService (argon2 and all)."""

from __future__ import annotations

from warnd.auth.service import AuthService
from warnd.config import AuthCfg
from warnd.db.engine import Database

PASSWORD = "correct-horse-battery"


async def add_user(db: Database, name: str, role: str, password: str = PASSWORD, display_name: str = "") -> None:
    await AuthService(db, AuthCfg()).add_user(name, role, password, display_name, actor="test")


async def token_for(db: Database, name: str, role: str | None = None) -> str:
    """A personal API token of `name` (created with `role` first when given)."""
    auth = AuthService(db, AuthCfg())
    if role is not None:
        await auth.add_user(name, role, PASSWORD, actor="test")
    token, _ = await auth.create_token(name, "test", actor="test")
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
