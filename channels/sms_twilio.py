"""SMS through Twilio's Programmable Messaging API, with the official `twilio` SDK.

Sending uses the SDK's asyncio client (`messages.create_async`). Delivery reports and
replies arrive as Twilio webhooks signed with X-Twilio-Signature (HMAC-SHA1 of the full
URL plus the sorted POST parameters, keyed with the auth token); a request whose signature
does not verify is answered 403 before anything reads it.

Twilio does not deliver replies sent from mainland China (+86) handsets, so in China
confirmation by SMS reply must go through a Chinese provider (channels.sms_tencent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient

from channels.base import (
    ChannelBase,
    DeliveryReport,
    InboundReply,
    InboundSink,
    InDoubtSendError,
    OutboundMessage,
    PermanentSendError,
    SendReceipt,
    TransientSendError,
)
from channels.twilio_common import RecordingHttpClient, TwilioAccount, _classify
from channels.webhook_io import refuse
from warnd.clock import Clock

STATUS_PATH = "/webhooks/twilio/sms/status"
INBOUND_PATH = "/webhooks/twilio/sms/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_DELIVERED = {"delivered", "read"}
_FAILED = {"failed", "undelivered", "canceled"}
# Twilio stamps times by its own clock; tolerate skew against ours when matching.
_CLOCK_SLACK = timedelta(minutes=2)

class TwilioSms(TwilioAccount, ChannelBase):
    kind = "sms"
    provider = "twilio"
    max_batch = 1  # one recipient per Messages request
    rate_per_second = None  # per sender and account (Twilio queues what exceeds it)
    lookup = "exact"  # the Messages list, filtered by recipient and time, names our text
    delivery_reports = True  # status callbacks

    @classmethod
    def from_settings(cls, cfg: Any, *, public_base_url: str, fallback: Any = None) -> TwilioSms:
        """From [sms.twilio] (account_sid, auth_token, from_number, api_base_url)."""
        return cls(account_sid=cfg.account_sid, auth_token=cfg.auth_token, from_number=cfg.from_number,
                   public_base_url=public_base_url, api_base_url=cfg.api_base_url or None)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        public_base_url: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        http_client: AsyncTwilioHttpClient | None = None,
        timeout: float = 15.0,
        clock: Clock | None = None,
    ) -> None:
        """public_base_url: how Twilio reaches our webhooks (https://warnd.example.gov.cn).
        api_base_url: None for api.twilio.com; tests and the demo give the simulator's URL.
        http_client: defaults to a RecordingHttpClient (Retry-After needs one)."""
        if not (from_number or messaging_service_sid):
            raise ValueError("TwilioSms needs from_number or messaging_service_sid")
        super().__init__(account_sid=account_sid, auth_token=auth_token, public_base_url=public_base_url,
                         api_base_url=api_base_url, http_client=http_client, timeout=timeout, clock=clock)
        self.from_number = from_number
        self.send_timeout = timeout
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = self.public_base_url + STATUS_PATH
        self.inbound_url = self.public_base_url + INBOUND_PATH

    def _messages(self) -> Any:
        return self._account().messages

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        sender: dict[str, str] = {}
        if self.from_number:
            sender["from_"] = self.from_number
        if self.messaging_service_sid:
            sender["messaging_service_sid"] = self.messaging_service_sid
        try:
            created = await self._messages().create_async(
                to=msg.to, body=msg.body, status_callback=self.status_callback_url, **sender
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            error = _classify(exc, "send")
            if int(exc.status) >= 500:  # after our request was written: Twilio may have taken it
                raise InDoubtSendError(str(error)) from exc
            raise error from exc
        except aiohttp.ClientConnectorError as exc:  # no connection was made: nothing was sent
            raise TransientSendError(f"twilio send: cannot connect: {exc!r}", reason="unreachable") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The request may or may not have reached Twilio: the engine's find_sent decides.
            raise InDoubtSendError(f"twilio send: network error: {exc!r}") from exc
        return SendReceipt(provider=self.provider, provider_id=str(created.sid))

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        """Messages to msg.to since `since` (wall-clock time) with exactly msg.body.
        Twilio filters DateSent by day, so we ask for the day and compare date_created here."""
        since_utc = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        floor = since_utc - _CLOCK_SLACK
        try:
            stream = await self._messages().stream_async(
                to=msg.to, date_sent_after=floor.strftime("%Y-%m-%d"), page_size=100, limit=1000
            )
            async for record in stream:
                created = record.date_created
                if record.body == msg.body and (created is None or created >= floor):
                    return SendReceipt(provider=self.provider, provider_id=str(record.sid))
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _classify(exc, "find_sent") from exc
        except TwilioException as exc:  # a page that failed to load: status is in args[1]
            status = getattr(exc.args[1], "status_code", 0) if len(exc.args) > 1 else 0
            if status == 429 or status >= 500 or status == 0:
                raise TransientSendError(f"twilio find_sent: HTTP {status}") from exc
            raise PermanentSendError(f"twilio find_sent: HTTP {status}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientSendError(f"twilio find_sent: network error: {exc!r}") from exc
        return None

    # -- webhooks ------------------------------------------------------------------------

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        return [
            web.post(STATUS_PATH, self._signed(self._on_status, sink)),
            web.post(INBOUND_PATH, self._signed(self._on_inbound, sink)),
        ]

    def _signed(
        self,
        handler: Callable[[Mapping[str, str], InboundSink], Awaitable[web.Response]],
        sink: InboundSink,
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def verify(request: web.Request) -> web.Response:
            fields = await self._verified_form(request)
            if isinstance(fields, web.Response):
                return fields
            return await handler(fields, sink)

        return verify

    async def _on_status(self, form: Mapping[str, str], sink: InboundSink) -> web.Response:
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if not sid or not status:
            return refuse(400, "Bad request", "MessageSid and MessageStatus are required")
        final = status in _DELIVERED or status in _FAILED
        error = None
        if status in _FAILED:
            error = f"{status} {form.get('ErrorCode', '')}".strip()
        await sink.on_report(
            DeliveryReport(
                provider=self.provider,
                dedupe_key=f"{sid}:{status}",
                provider_id=sid,
                delivered=status in _DELIVERED,
                final=final,
                error=error,
            )
        )
        return web.Response(status=204)

    async def _on_inbound(self, form: Mapping[str, str], sink: InboundSink) -> web.Response:
        sid = form.get("MessageSid") or form.get("SmsSid")
        sender = form.get("From")
        if not sid or not sender:
            return refuse(400, "Bad request", "MessageSid and From are required")
        await sink.on_reply(
            InboundReply(
                provider=self.provider,
                dedupe_key=sid,
                from_address=sender,
                text=form.get("Body", ""),
                received_at=self._clock.now(),
            )
        )
        # Empty TwiML: acknowledge without Twilio sending an automatic answer.
        return web.Response(text=EMPTY_TWIML, content_type="application/xml")



__all__ = ["EMPTY_TWIML", "INBOUND_PATH", "STATUS_PATH", "RecordingHttpClient", "TwilioSms"]
