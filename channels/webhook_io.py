"""What provider webhooks share: refusals as application/problem+json (RFC 9457), and strict
reading of form bodies.

A webhook's body arrives from anyone who knows the URL, before its signature is checked:
aiohttp's `request.post()` raises UnicodeDecodeError on a non-UTF-8 body and silently turns
bad percent-escapes into U+FFFD, so forms are parsed here instead, strictly, and a malformed
one is a 4xx that names the problem.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

MAX_FORM_FIELDS = 200  # Twilio sends about 30


def refuse(status: int, title: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                        content_type="application/problem+json")


class FormError(ValueError):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def parse_form(raw: bytes, content_type: str, charset: str | None) -> MultiDict[str]:
    """Strictly parsed urlencoded fields. Raises FormError naming what is wrong."""
    if content_type not in ("application/x-www-form-urlencoded", "application/octet-stream"):
        raise FormError(415, "Unsupported media type",
                        f"expected an application/x-www-form-urlencoded form, got {content_type}")
    if (charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise FormError(415, "Unsupported charset", f"form bodies must be UTF-8, not {charset}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormError(400, "Bad form body", f"the form body is not valid UTF-8 (byte {e.start})") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise FormError(400, "Bad form body", "a percent-encoded value is not valid UTF-8") from None
    except ValueError:
        raise FormError(400, "Bad form body", f"more than {MAX_FORM_FIELDS} form fields") from None
    return MultiDict(pairs)


async def read_form(request: web.Request) -> MultiDict[str] | web.Response:
    """The urlencoded form fields, or a 4xx refusal naming what is wrong with the body."""
    try:
        return parse_form(await request.read(), request.content_type, request.charset)
    except FormError as e:
        return refuse(e.status, e.title, e.detail)


class Outcomes:
    """What the engine answered for recent interactive confirmations (a key press, a button),
    by dedupe key: a provider re-delivering the same event hears "duplicate" from the engine,
    and the caller must still be told the truth about the first one. In memory and bounded;
    after a restart a re-delivery is answered as not confirmed (the safe side)."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._seen: dict[str, str] = {}

    def settle(self, key: str, outcome: str) -> str:
        """The outcome to act on: a duplicate's first outcome when we still know it."""
        if outcome == "duplicate":
            return self._seen.get(key, outcome)
        self._seen[key] = outcome
        if len(self._seen) > self.size:
            del self._seen[next(iter(self._seen))]
        return outcome


def confirmed(outcome: str) -> bool:
    """Did this outcome leave the call confirmed? ("already open" means the confirmation lost
    a race and did not happen; "already cancelled" means the warning was lifted.)"""
    return outcome in ("confirmed", "already confirmed")
