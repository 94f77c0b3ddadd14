"""What the Twilio channels (SMS, voice) share: one account's SDK client, built lazily (the
aiohttp session inside it needs a running loop), the check of Twilio's webhook signature,
and closing."""

from __future__ import annotations

import contextvars
import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import PermanentSendError, TransientSendError
from channels.webhook_io import read_form, refuse
from warnd.clock import Clock, SystemClock

# The SDK's exceptions drop response headers; the HTTP client records them here so send()
# can honour Retry-After. A ContextVar keeps concurrent sends (separate tasks) apart.
_last_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "twilio_last_headers", default=None
)


class RecordingHttpClient(AsyncTwilioHttpClient):
    """AsyncTwilioHttpClient that (1) always applies its timeout — the stock client passes
    the per-call timeout, normally None, which aiohttp reads as "wait forever" — (2) keeps
    the last response's headers for the calling task, and (3) sends basic auth as a header."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature)
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:  # as a header: aiohttp deprecates its `auth` parameter
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        response = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )
        _last_headers.set(response.headers)
        return response


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _classify(exc: TwilioRestException | TwilioServiceException, what: str) -> Exception:
    status = int(exc.status)
    text = f"twilio {what}: HTTP {status} code {exc.code}: {getattr(exc, 'msg', '') or getattr(exc, 'title', '')}"
    if status == 429 or status >= 500:
        return TransientSendError(text, retry_after=_retry_after(_last_headers.get()),
                                  reason="rate_limited" if status == 429 else None)
    return PermanentSendError(text)


class TwilioAccount:
    def __init__(self, *, account_sid: str, auth_token: str, public_base_url: str,
                 api_base_url: str | None, http_client: AsyncTwilioHttpClient | None, timeout: float,
                 clock: Clock | None) -> None:
        self.account_sid = account_sid
        self.public_base_url = public_base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._auth_token = auth_token
        self._validator = RequestValidator(auth_token)
        self._timeout = timeout
        self._http = http_client
        self._owns_http = http_client is None
        self._client: Client | None = None
        self._clock: Clock = clock or SystemClock()

    def _account(self) -> Any:
        """The SDK's v2010 account resource (messages, calls)."""
        if self._client is None:
            if self._http is None:
                self._http = RecordingHttpClient(timeout=self._timeout)
            self._client = Client(self.account_sid, self._auth_token, http_client=self._http)
            if self.api_base_url:
                self._client.api.base_url = self.api_base_url  # the SDK's domain root
        return self._client.api.v2010.account

    async def _verified_form(self, request: web.Request) -> dict[str, str] | web.Response:
        """The webhook's form fields, or the refusal to answer: 403 when X-Twilio-Signature is
        missing or does not verify, 4xx naming the problem when the body is not a UTF-8 form.
        Twilio signs the URL it called: our public base plus the path and query it requested
        (raw_path keeps both, percent-encoding intact)."""
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            return refuse(403, "Forbidden", "X-Twilio-Signature is required")
        form = await read_form(request)
        if isinstance(form, web.Response):
            return form
        if not self._validator.validate(self.public_base_url + request.raw_path, form, signature):
            return refuse(403, "Forbidden", "invalid X-Twilio-Signature")
        return dict(form.items())

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None
        self._client = None
