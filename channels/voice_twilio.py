"""Voice calls (智能外呼, 叫醒叫应) through Twilio Programmable Voice, with the official SDK.

A call is created with `calls.create_async` and inline TwiML: the warning is spoken in
Chinese (`<Say language="zh-CN">`) inside a `<Gather numDigits="1">`. Key 1 confirms the
call's 叫应 and is answered with a spoken confirmation; `*` repeats the message; no key (or
another key) repeats it up to `attempts` times, then the call ends and the delivery is
reported failed ("no key pressed") so the escalation ladder moves on. Call status callbacks
map busy / no-answer / failed / canceled to a failed delivery the same way.

Every webhook is signed by Twilio (X-Twilio-Signature over our public URL and the POST
parameters, keyed with the auth token); an unsigned or forged request gets 403 and
reaches nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, cast

import aiohttp
from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from channels.base import (
    ActionSink,
    DeliveryReport,
    InboundAction,
    InboundSink,
    OutboundMessage,
    SendReceipt,
    TransientSendError,
)
from channels.sms_twilio import RecordingHttpClient, _classify
from warnd.clock import Clock, SystemClock

GATHER_PATH = "/webhooks/twilio/voice/gather"
STATUS_PATH = "/webhooks/twilio/voice/status"
LANGUAGE = "zh-CN"
PROMPT = "确认收到请按1，重听请按星号键。"
CONFIRMED = "已确认收到，谢谢。请按预案立即落实。"
NO_KEY = "未收到您的按键。"
GIVE_UP = "未收到确认，稍后将再次联系您。"
FALLBACK_TEXT = "您有一条预警尚未确认。"  # the message text could not be found (should not happen)
MAX_TWIML = 4000  # Twilio's limit for the Twiml parameter

_FAILED = {"busy", "no-answer", "failed", "canceled"}


class TwilioVoice:
    kind = "voice"
    provider = "twilio_voice"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        public_base_url: str,
        api_base_url: str | None = None,
        http_client: AsyncTwilioHttpClient | None = None,
        timeout: float = 15.0,
        ring_seconds: int = 30,  # how long to let the phone ring (Twilio `Timeout`)
        gather_seconds: int = 8,  # wait for a key after the message
        attempts: int = 2,  # times the message is played when no key is pressed
        clock: Clock | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        self.public_base_url = public_base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.gather_url = self.public_base_url + GATHER_PATH
        self.status_url = self.public_base_url + STATUS_PATH
        self.ring_seconds, self.gather_seconds, self.attempts = ring_seconds, gather_seconds, max(attempts, 1)
        self._auth_token = auth_token
        self._validator = RequestValidator(auth_token)
        self._timeout = timeout
        self._http = http_client
        self._owns_http = http_client is None
        self._client: Client | None = None
        self._clock: Clock = clock or SystemClock()

    def _calls(self) -> Any:
        if self._client is None:
            if self._http is None:
                self._http = RecordingHttpClient(timeout=self._timeout)
            self._client = Client(self.account_sid, self._auth_token, http_client=self._http)
            if self.api_base_url:
                self._client.api.base_url = self.api_base_url
        return self._client.api.v2010.account.calls

    # -- TwiML ---------------------------------------------------------------------------

    def twiml(self, text: str, attempt: int = 1, preface: str = "") -> str:
        """The message inside a one-digit Gather whose result (or silence) comes back to us."""
        vr = VoiceResponse()
        g = vr.gather(input="dtmf", num_digits=1, timeout=self.gather_seconds, finish_on_key="",
                      action=f"{self.gather_url}?attempt={attempt}", method="POST", action_on_empty_result=True)
        if preface:
            g.say(preface, language=LANGUAGE)
        g.say(text, language=LANGUAGE)
        g.say(PROMPT, language=LANGUAGE)
        out = str(vr)
        if len(out) > MAX_TWIML:  # keep within Twilio's limit: shorten the spoken text
            return self.twiml(text[: max(len(text) - (len(out) - MAX_TWIML) - 1, 20)] + "…", attempt, preface)
        return out

    @staticmethod
    def _say(text: str, hangup: bool = True) -> web.Response:
        vr = VoiceResponse()
        vr.say(text, language=LANGUAGE)
        if hangup:
            vr.hangup()
        return web.Response(text=str(vr), content_type="application/xml")

    # -- sending -------------------------------------------------------------------------

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        try:
            call = await self._calls().create_async(
                to=msg.to, from_=self.from_number, twiml=self.twiml(msg.body),
                status_callback=self.status_url, status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                timeout=self.ring_seconds,
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _classify(exc, "call") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientSendError(f"twilio call: network error: {exc!r}") from exc
        return SendReceipt(provider=self.provider, provider_id=str(call.sid))

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        """Twilio keeps no idempotency key or text for a call, so a call whose creation was
        lost in a crash cannot be told apart from another call to the same number: None
        (the call is placed again: one extra call rather than a missing one)."""
        return None

    # -- webhooks ------------------------------------------------------------------------

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        actions = cast(ActionSink, sink)
        return [
            web.post(GATHER_PATH, self._signed(self._on_gather, actions)),
            web.post(STATUS_PATH, self._signed(self._on_status, actions)),
        ]

    def _signed(
        self, handler: Callable[[web.Request, Mapping[str, str], ActionSink], Awaitable[web.Response]],
        sink: ActionSink,
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def verify(request: web.Request) -> web.Response:
            signature = request.headers.get("X-Twilio-Signature", "")
            form = await request.post()
            url = self.public_base_url + request.raw_path
            if not signature or not self._validator.validate(url, form, signature):
                return web.Response(status=403, text="invalid X-Twilio-Signature")
            return await handler(request, {k: str(v) for k, v in form.items()}, sink)

        return verify

    async def _on_gather(self, request: web.Request, form: Mapping[str, str], sink: ActionSink) -> web.Response:
        sid = form.get("CallSid", "")
        if not sid:
            return web.Response(status=400, text="CallSid is required")
        digits = form.get("Digits", "")
        try:
            attempt = max(int(request.query.get("attempt", "1")), 1)
        except ValueError:
            attempt = 1
        if digits == "1":
            await sink.on_action(InboundAction(
                provider=self.provider, dedupe_key=f"{sid}:key1", provider_id=sid,
                from_address=form.get("To", ""), via="voice", received_at=self._clock.now()))
            return self._say(CONFIRMED)
        text = await sink.message_text(self.provider, sid) or FALLBACK_TEXT
        if digits == "*":
            return web.Response(text=self.twiml(text, attempt), content_type="application/xml")
        if attempt < self.attempts:
            return web.Response(text=self.twiml(text, attempt + 1, preface=NO_KEY), content_type="application/xml")
        await sink.on_report(DeliveryReport(provider=self.provider, dedupe_key=f"{sid}:nokey", provider_id=sid,
                                            delivered=False, final=True, error="no key pressed"))
        return self._say(GIVE_UP)

    async def _on_status(self, request: web.Request, form: Mapping[str, str], sink: ActionSink) -> web.Response:
        sid = form.get("CallSid", "")
        status = form.get("CallStatus", "").lower()
        if not sid or not status:
            return web.Response(status=400, text="CallSid and CallStatus are required")
        final = status == "completed" or status in _FAILED
        await sink.on_report(DeliveryReport(
            provider=self.provider, dedupe_key=f"{sid}:{status}", provider_id=sid,
            delivered=status == "completed", final=final,
            error=f"{status} {form.get('ErrorCode', '')}".strip() if status in _FAILED else None))
        return web.Response(status=204)

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None
        self._client = None


__all__ = ["GATHER_PATH", "STATUS_PATH", "TwilioVoice"]
