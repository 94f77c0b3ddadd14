"""Passwords (argon2id) and opaque tokens (random, stored as SHA-256).

Passwords are low-entropy, so they get a slow, memory-hard hash (argon2id through
argon2-cffi, its default parameters: 3 passes over 64 MiB). Session cookies and personal API
tokens are 256 random bits: a plain SHA-256 is enough to make a copy of the database useless
for logging in, and it keeps the per-request lookup cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # hashing cost must not be an attacker's lever
TOKEN_PREFIX = "wdt_"  # personal API tokens: recognisable in a leaked script or log

_hasher = PasswordHasher()
# Verified against when the account does not exist, so "no such user" costs as much time as
# "wrong password" and the response time does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordRejected(ValueError):
    pass


def check_password_rules(password: str, name: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip().lower() == name.strip().lower():
        raise PasswordRejected("password must not be the user name")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant work whether or not `stored` exists; False for any malformed input."""
    too_long = len(password) > MAX_PASSWORD_LENGTH
    try:
        ok = _hasher.verify(stored or _DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None and not too_long


def needs_rehash(stored: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def csrf_for(session_token: str) -> str:
    """The session's CSRF token, derived from the (secret) session token rather than stored:
    unguessable without the cookie, and fixed for the session's life."""
    return hmac.new(session_token.encode("ascii", errors="replace"), b"warnd-csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", errors="replace"), b.encode("utf-8", errors="replace"))
