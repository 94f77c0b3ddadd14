"""A local stand-in for Twilio's Programmable Messaging REST API (2010-04-01).

Speaks what the official `twilio` SDK sends and parses: form-encoded POST to
Messages.json with HTTP basic auth, the Message JSON resource, the paging envelope of
the list endpoint with `To` / `DateSent>` filters, and Twilio's error JSON
({code, message, more_info, status}). It also plays Twilio calling us: status callbacks
and inbound messages, signed with X-Twilio-Signature exactly as Twilio signs them (it holds
the auth token, as Twilio does).

Voice: Calls.json accepts outbound calls (inline `Twiml` or a `Url` to fetch, fetched signed
like Twilio), and `answer()` plays the callee: it runs the TwiML, "hears" each <Say>, presses
the given keys in <Gather> (posting Digits to the action URL, signed), follows the TwiML it
gets back, and posts the call status callbacks. `busy_numbers` / `no_answer_numbers` end a
call at once with that status; with `auto_calls`, numbers in `call_scripts` answer by
themselves after `ring_seconds`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientError, web
from defusedxml.ElementTree import fromstring
from twilio.request_validator import RequestValidator

from devtools.simulators import SimMessage, SimulatorBase

API_VERSION = "2010-04-01"
FINAL_STATUSES = {"delivered", "undelivered", "failed", "canceled", "read"}

# Twilio's error codes for the faults we inject.
_ERRORS = {
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def _rfc2822(t: datetime | None) -> str | None:
    return None if t is None else format_datetime(t.astimezone(UTC), usegmt=False)


def num_segments(body: str) -> int:
    """SMS segments as Twilio bills them: GSM-7 160/153, otherwise UCS-2 70/67 code units."""
    if all(c in _GSM7 for c in body):
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def _parse_date_filter(value: str) -> datetime:
    """DateSent> accepts YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ."""
    if len(value) == 10:
        d = date.fromisoformat(value)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class TwilioApi(SimulatorBase):
    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "simulated-auth-token",
        *,
        auto_status: bool = False,
        undeliverable_numbers: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.auto_status = auto_status  # post queued → sent → delivered to StatusCallback
        # Accepted by the API but reported `undelivered` (30003, handset unreachable).
        self.undeliverable_numbers: set[str] = set(undeliverable_numbers)
        self.validator = RequestValidator(auth_token)
        self.callbacks_sent = 0
        self._by_sid: dict[str, SimMessage] = {}
        # Voice: placed calls (not in `messages`), and how callees behave.
        self.calls: list[SimMessage] = []
        self.busy_numbers: set[str] = set()
        self.no_answer_numbers: set[str] = set()
        self.call_scripts: dict[str, Sequence[str]] = {}  # number -> keys pressed ("" = silence)
        self.auto_calls = False
        self.ring_seconds = 0.3
        self._calls_by_sid: dict[str, SimMessage] = {}

    # -- server --------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        app.router.add_post(base + "/Messages.json", self._create)
        app.router.add_get(base + "/Messages.json", self._list)
        app.router.add_get(base + "/Messages/{sid}.json", self._fetch)
        app.router.add_post(base + "/Calls.json", self._create_call)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch_call)
        return app

    def _error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
            headers=headers,
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            hmac.compare_digest(user, self.account_sid)
            and hmac.compare_digest(password, self.auth_token)
            and request.match_info["account_sid"] == self.account_sid
        )

    def _gate(self, request: web.Request) -> web.Response | None:
        """Auth, then injected faults; None means the call may proceed."""
        self.requests_seen += 1
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        fault = self._take_fault()
        if fault is None:
            return None
        status = int(fault[0] if isinstance(fault, tuple) else fault)
        headers = {"Retry-After": str(fault[1])} if isinstance(fault, tuple) else None
        code, message = _ERRORS.get(status, (status * 100, "Error"))
        return self._error(status, code, message, headers)

    def fail_next(self, count: int, status_or_code: Any, retry_after: float | None = None) -> None:
        """Next `count` API calls answer with this HTTP status (429, 500, 503, ...),
        with a Retry-After header when `retry_after` is given."""
        super().fail_next(
            count, (status_or_code, retry_after) if retry_after is not None else status_or_code
        )

    def _resource(self, m: SimMessage) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{m.id}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": m.body,
            "date_created": _rfc2822(m.time),
            "date_sent": _rfc2822(m.extra.get("date_sent")),
            "date_updated": _rfc2822(m.extra.get("date_updated", m.time)),
            "direction": "outbound-api",
            "error_code": m.extra.get("error_code"),
            "error_message": m.extra.get("error_message"),
            "from": m.extra.get("from"),
            "messaging_service_sid": m.extra.get("messaging_service_sid"),
            "num_media": "0",
            "num_segments": str(num_segments(m.body)),
            "price": None,
            "price_unit": "USD",
            "sid": m.id,
            "status": m.status,
            "subresource_uris": {"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
            "to": m.to,
            "uri": uri + ".json",
        }

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        form = await request.post()
        to = str(form.get("To", ""))
        sender = form.get("From")
        service = form.get("MessagingServiceSid")
        body = form.get("Body")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        body = str(body)
        if len(body) > 1600:
            return self._error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to in self.fail_numbers or not to.startswith("+") or not to[1:].isdigit():
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        now = datetime.now(UTC)
        msg = SimMessage(
            to=to,
            body=body,
            id="SM" + secrets.token_hex(16),
            context=None,  # Twilio's Messages API has no idempotency field
            time=now,
            status="queued" if sender else "accepted",
            extra={
                "from": str(sender) if sender else None,
                "messaging_service_sid": str(service) if service else None,
                "status_callback": str(form["StatusCallback"])
                if form.get("StatusCallback")
                else None,
                "date_updated": now,
            },
        )
        self._by_sid[msg.id] = msg
        await self._record([msg])
        if self.auto_status and msg.extra["status_callback"]:
            self._spawn(self._progress(msg))
        return web.json_response(self._resource(msg), status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        msg = self._by_sid.get(request.match_info["sid"])
        if msg is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(self._resource(msg))

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        q = request.query
        found = list(reversed(self.messages))  # newest first, like Twilio
        if "To" in q:
            found = [m for m in found if m.to == q["To"]]
        if "From" in q:
            found = [m for m in found if m.extra.get("from") == q["From"]]
        try:
            if "DateSent>" in q:
                after = _parse_date_filter(q["DateSent>"])
                found = [m for m in found if (m.extra.get("date_sent") or m.time) >= after]
            if "DateSent<" in q:
                before = _parse_date_filter(q["DateSent<"])
                found = [m for m in found if (m.extra.get("date_sent") or m.time) <= before]
            page = int(q.get("Page", "0"))
            page_size = min(max(int(q.get("PageSize", "50")), 1), 1000)
        except ValueError:
            return self._error(400, 20001, "Invalid filter parameter")
        start = page * page_size
        chunk = found[start : start + page_size]
        keep = {k: v for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")}
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(n: int) -> str:
            return path + "?" + urlencode({**keep, "PageSize": page_size, "Page": n})

        has_next = start + page_size < len(found)
        return web.json_response(
            {
                "messages": [self._resource(m) for m in chunk],
                "end": start + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) + f"&PageToken=PASM{page + 1}"
                if has_next
                else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            }
        )

    # -- Twilio calling us ------------------------------------------------------------------

    def sign(self, url: str, params: dict[str, str]) -> str:
        """X-Twilio-Signature for a form POST to `url` (HMAC-SHA1 with the auth token)."""
        return str(self.validator.compute_signature(url, params))

    async def post_signed(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        """POST form params to our webhook as Twilio does; returns (status, body)."""
        headers = {
            "X-Twilio-Signature": self.sign(url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        async with self._http().post(url, data=params, headers=headers) as resp:
            self.callbacks_sent += 1
            return resp.status, await resp.text()

    async def send_status(
        self,
        message: SimMessage | str,
        status: str,
        *,
        url: str | None = None,
        error_code: int | None = None,
    ) -> tuple[int, str]:
        """Move a message to `status` and post the status callback Twilio would post."""
        msg = self._by_sid[message] if isinstance(message, str) else message
        now = datetime.now(UTC)
        msg.status = status
        msg.extra["date_updated"] = now
        if status in ("sent", "delivered", "undelivered") and not msg.extra.get("date_sent"):
            msg.extra["date_sent"] = now
        if error_code is not None:
            msg.extra["error_code"] = error_code
        await self._changed()
        target = url or msg.extra.get("status_callback")
        if not target:
            return 0, ""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": msg.id,
            "MessageStatus": status,
            "SmsSid": msg.id,
            "SmsStatus": status,
            "To": msg.to,
        }
        if msg.extra.get("from"):
            params["From"] = msg.extra["from"]
        if msg.extra.get("messaging_service_sid"):
            params["MessagingServiceSid"] = msg.extra["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return await self.post_signed(target, params)

    async def _progress(self, msg: SimMessage) -> None:
        try:
            await self.send_status(msg, msg.status)  # queued (accepted with a service)
            await self.send_status(msg, "sent")
            if msg.to in self.undeliverable_numbers:
                await self.send_status(msg, "undelivered", error_code=30003)
            else:
                await self.send_status(msg, "delivered")
        except (ClientError, TimeoutError) as exc:  # our webhook down: Twilio gives up too
            msg.extra["callback_error"] = repr(exc)

    async def send_inbound(
        self, url: str, from_: str, body: str, *, to: str = "+15005550006"
    ) -> tuple[int, str]:
        """A handset replies: post the inbound-message webhook Twilio would post."""
        sid = "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": str(num_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        return await self.post_signed(url, params)

    # -- voice -----------------------------------------------------------------------------

    def _call_resource(self, c: SimMessage) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{c.id}"
        return {
            "account_sid": self.account_sid, "annotation": None, "answered_by": None,
            "api_version": API_VERSION, "caller_name": None, "date_created": _rfc2822(c.time),
            "date_updated": _rfc2822(c.extra.get("date_updated", c.time)), "direction": "outbound-api",
            "duration": c.extra.get("duration"), "end_time": None, "forwarded_from": None,
            "from": c.extra.get("from"), "from_formatted": c.extra.get("from"), "group_sid": None,
            "parent_call_sid": None, "phone_number_sid": None, "price": None, "price_unit": "USD",
            "sid": c.id, "start_time": None, "status": c.status, "subresource_uris": {},
            "to": c.to, "to_formatted": c.to, "trunk_sid": None, "uri": uri + ".json", "queue_time": "0",
        }

    async def _create_call(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        form = await request.post()
        to, sender = str(form.get("To", "")), str(form.get("From", ""))
        url, twiml = form.get("Url"), form.get("Twiml")
        if not to:
            return self._error(400, 21201, "No 'To' number is specified")
        if not sender:
            return self._error(400, 21213, "No 'From' number is specified")
        if not url and not twiml and not form.get("ApplicationSid"):
            return self._error(400, 21205, "Url, Twiml or ApplicationSid is required")
        if twiml and len(str(twiml)) > 4000:
            return self._error(400, 21236, "Twiml exceeds the 4000 character limit")
        if to in self.fail_numbers or not to.startswith("+") or not to[1:].isdigit():
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        now = datetime.now(UTC)
        call = SimMessage(to=to, body=str(twiml or ""), id="CA" + secrets.token_hex(16), context=None, time=now,
                          status="queued", extra={
                              "from": sender, "url": str(url) if url else None,
                              "twiml": str(twiml) if twiml else None,
                              "status_callback": str(form["StatusCallback"]) if form.get("StatusCallback") else None,
                              "events": [str(e) for e in form.getall("StatusCallbackEvent", [])],
                              "said": [], "pressed": [], "date_updated": now})
        self._calls_by_sid[call.id] = call
        async with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        if self.auto_calls or to in self.busy_numbers or to in self.no_answer_numbers:
            self._spawn(self._auto(call))
        return web.json_response(self._call_resource(call), status=201)

    async def _fetch_call(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        call = self._calls_by_sid.get(request.match_info["sid"])
        if call is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(self._call_resource(call))

    async def _auto(self, call: SimMessage) -> None:
        try:
            await asyncio.sleep(self.ring_seconds)
            if call.to in self.busy_numbers:
                await self.end_call(call, "busy")
            elif call.to in self.no_answer_numbers:
                await self.end_call(call, "no-answer")
            elif call.to in self.call_scripts:
                await self.answer(call, self.call_scripts[call.to])
        except (ClientError, TimeoutError) as exc:
            call.extra["callback_error"] = repr(exc)

    def _call_params(self, call: SimMessage, status: str) -> dict[str, str]:
        return {"AccountSid": self.account_sid, "ApiVersion": API_VERSION, "CallSid": call.id,
                "CallStatus": status, "Direction": "outbound-api", "From": call.extra.get("from") or "",
                "To": call.to}

    async def _call_status(self, call: SimMessage, status: str, event: str) -> None:
        call.status = status
        call.extra["date_updated"] = datetime.now(UTC)
        await self._changed()
        target = call.extra.get("status_callback")
        if target and (event == "completed" or event in call.extra["events"]):
            params = self._call_params(call, status)
            params["CallbackSource"] = "call-progress-events"
            if status == "completed":
                params["CallDuration"] = str(call.extra.get("duration") or 0)
            await self.post_signed(target, params)

    async def end_call(self, call: SimMessage | str, status: str) -> None:
        """The call ends unanswered: busy, no-answer, failed or canceled."""
        c = self._calls_by_sid[call] if isinstance(call, str) else call
        await self._call_status(c, "initiated", "initiated")
        if status != "failed":
            await self._call_status(c, "ringing", "ringing")
        await self._call_status(c, status, "completed")

    async def answer(self, call: SimMessage | str, keys: Sequence[str] = ("1",)) -> list[str]:
        """Pick up and press `keys` one per <Gather> ("" = stay silent). Returns what was said."""
        c = self._calls_by_sid[call] if isinstance(call, str) else call
        pending = list(keys)
        await self._call_status(c, "initiated", "initiated")
        await self._call_status(c, "ringing", "ringing")
        await self._call_status(c, "in-progress", "answered")
        said: list[str] = c.extra["said"]
        if c.extra.get("twiml"):
            doc = c.extra["twiml"]
        else:
            _, doc = await self.post_signed(c.extra["url"], self._call_params(c, "in-progress"))
        for _ in range(50):  # TwiML documents followed; a loop guard
            nxt = None
            hangup = False
            for verb in fromstring(doc):
                if verb.tag == "Say":
                    said.append(verb.text or "")
                elif verb.tag == "Hangup":
                    hangup = True
                    break
                elif verb.tag == "Redirect":
                    _, nxt = await self.post_signed(verb.text or "", self._call_params(c, "in-progress"))
                    break
                elif verb.tag == "Gather":
                    said.extend(v.text or "" for v in verb if v.tag == "Say")
                    key = pending.pop(0) if pending else ""
                    c.extra["pressed"].append(key)
                    if key or verb.get("actionOnEmptyResult") == "true":
                        params = {**self._call_params(c, "in-progress"), "Digits": key, "FinishedOnKey": ""}
                        _, nxt = await self.post_signed(verb.get("action") or "", params)
                        break
            if hangup or nxt is None:
                break
            doc = nxt
        c.extra["duration"] = 30
        await self._call_status(c, "completed", "completed")
        return said
