"""Voice calls (智能外呼, 叫醒叫应) through Twilio Programmable Voice, with the official SDK.

A call is created with `calls.create_async` and inline TwiML: the warning is spoken in
Chinese (`<Say language="zh-CN">`) inside a `<Gather numDigits="1">`. Key 1 confirms the
call's 叫应 and is answered with a spoken confirmation; `*` repeats the message; no key (or
another key) repeats it up to `attempts` times, then the call ends and the delivery is
reported failed ("no key pressed") so the escalation ladder moves on. The caller hears
"已确认" only when the engine answers that the confirmation is stored; otherwise they are
told it could not be recorded and to reply by SMS or call the duty room (the engine's
`action_rejected` event says why). Call status callbacks
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
import structlog
from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.twiml.voice_response import VoiceResponse

from channels.base import (
    ActionSink,
    ChannelBase,
    DeliveryReport,
    InboundAction,
    InboundSink,
    OutboundMessage,
    SendReceipt,
    TransientSendError,
)
from channels.twilio_common import TwilioAccount, _classify
from channels.webhook_io import Outcomes, confirmed, refuse
from warnd.clock import Clock

log = structlog.get_logger("warnd.voice")

GATHER_PATH = "/webhooks/twilio/voice/gather"
STATUS_PATH = "/webhooks/twilio/voice/status"
LANGUAGE = "zh-CN"
PROMPT = "确认收到请按1，重听请按星号键。"
CONFIRMED = "已确认收到，谢谢。请按预案立即落实。"
# Said when the key press did not confirm (unknown call, not the recipient, a lost race, or
# the engine could not be reached): never let the caller believe they confirmed.
NOT_CONFIRMED = "系统未能记录您的确认。请回复短信1确认，或致电县应急管理局值班室。"
LIFTED = "该预警已解除，无需确认，谢谢。"
NO_KEY = "未收到您的按键。"
GIVE_UP = "未收到确认，稍后将再次联系您。"
FALLBACK_TEXT = "您有一条预警尚未确认。"  # the message text could not be found (should not happen)
MAX_TWIML = 4000  # Twilio's limit for the Twiml parameter

_FAILED = {"busy", "no-answer", "failed", "canceled"}


class TwilioVoice(TwilioAccount, ChannelBase):
    kind = "voice"
    provider = "twilio_voice"
    max_batch = 1
    rate_per_second = None  # Twilio's calls-per-second limit is per account
    lookup = "none"  # a call carries no key or text of ours: find_sent cannot tell calls apart
    delivery_reports = True  # call status callbacks (completed, busy, no-answer, failed)

    @classmethod
    def from_settings(cls, cfg: Any, *, public_base_url: str, fallback: Any = None) -> TwilioVoice:
        """From [voice]; empty credentials fall back to [sms.twilio] (`fallback`)."""
        def pick(name: str) -> str:
            return str(getattr(cfg, name) or (getattr(fallback, name, "") if fallback is not None else ""))

        return cls(account_sid=pick("account_sid"), auth_token=pick("auth_token"), from_number=pick("from_number"),
                   public_base_url=public_base_url, api_base_url=pick("api_base_url") or None,
                   ring_seconds=cfg.ring_seconds, gather_seconds=cfg.gather_seconds, attempts=cfg.attempts)

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
        super().__init__(account_sid=account_sid, auth_token=auth_token, public_base_url=public_base_url,
                         api_base_url=api_base_url, http_client=http_client, timeout=timeout, clock=clock)
        self.from_number = from_number
        self.gather_url = self.public_base_url + GATHER_PATH
        self.status_url = self.public_base_url + STATUS_PATH
        self.ring_seconds, self.gather_seconds, self.attempts = ring_seconds, gather_seconds, max(attempts, 1)
        self._outcomes = Outcomes()

    def _calls(self) -> Any:
        return self._account().calls

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
        except aiohttp.ClientConnectorError as exc:
            raise TransientSendError(f"twilio call: cannot connect: {exc!r}", reason="unreachable") from exc
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
            fields = await self._verified_form(request)
            if isinstance(fields, web.Response):
                return fields
            return await handler(request, fields, sink)

        return verify

    async def _on_gather(self, request: web.Request, form: Mapping[str, str], sink: ActionSink) -> web.Response:
        sid = form.get("CallSid", "")
        if not sid:
            return refuse(400, "Bad request", "CallSid is required")
        digits = form.get("Digits", "")
        try:
            attempt = max(int(request.query.get("attempt", "1")), 1)
        except ValueError:
            attempt = 1
        if digits == "1":
            return self._say(await self._confirm(sid, form.get("To", ""), sink))
        text = await sink.message_text(self.provider, sid) or FALLBACK_TEXT
        if digits == "*":
            return web.Response(text=self.twiml(text, attempt), content_type="application/xml")
        if attempt < self.attempts:
            return web.Response(text=self.twiml(text, attempt + 1, preface=NO_KEY), content_type="application/xml")
        await sink.on_report(DeliveryReport(provider=self.provider, dedupe_key=f"{sid}:nokey", provider_id=sid,
                                            delivered=False, final=True, error="no key pressed"))
        return self._say(GIVE_UP)

    async def _confirm(self, sid: str, callee: str, sink: ActionSink) -> str:
        """What to say after key 1: 已确认 only once the engine has stored the confirmation."""
        key = f"{sid}:key1"
        try:
            outcome = self._outcomes.settle(key, await sink.on_action(InboundAction(
                provider=self.provider, dedupe_key=key, provider_id=sid, from_address=callee,
                via="voice", received_at=self._clock.now())))
        except Exception:  # the database is down: the caller must still hear the truth
            log.exception("voice confirmation failed", call_sid=sid)
            return NOT_CONFIRMED
        if confirmed(outcome):
            return CONFIRMED
        log.warning("voice key press did not confirm", call_sid=sid, outcome=outcome)
        return LIFTED if outcome == "already cancelled" else NOT_CONFIRMED

    async def _on_status(self, request: web.Request, form: Mapping[str, str], sink: ActionSink) -> web.Response:
        sid = form.get("CallSid", "")
        status = form.get("CallStatus", "").lower()
        if not sid or not status:
            return refuse(400, "Bad request", "CallSid and CallStatus are required")
        final = status == "completed" or status in _FAILED
        await sink.on_report(DeliveryReport(
            provider=self.provider, dedupe_key=f"{sid}:{status}", provider_id=sid,
            delivered=status == "completed", final=final,
            error=f"{status} {form.get('ErrorCode', '')}".strip() if status in _FAILED else None))
        return web.Response(status=204)



__all__ = ["GATHER_PATH", "STATUS_PATH", "TwilioVoice"]
