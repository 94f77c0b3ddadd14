"""SMS through Tencent Cloud SMS (API 2021-01-11), with the official tencentcloud SDK.

Tencent sends only approved templates. warnd registers one notification template whose
body is the single variable "{1}" and passes the whole rendered warning as that one
TemplateParam, so the text the duty room approved is the text that arrives. Tencent's
standard rules allow neither all-variable templates nor variables over 6 characters: the
account must have both granted (for an emergency bureau this is normally done through
Tencent's SMS support); otherwise SendSms fails with
InvalidParameterValue.TemplateParameterLengthLimit, a permanent error. See docs/sms-providers.md.

The SDK is synchronous (requests), so calls run in a small dedicated thread pool.

Replies (上行短信) and delivery reports (状态报告) arrive as Tencent callbacks. Tencent does
not sign them, so their URL carries a secret path segment compared in constant time; a
wrong token is answered 403 before the body is read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import requests
from aiohttp import web
from requests.adapters import HTTPAdapter
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client

from channels.base import (
    ChannelBase,
    DeliveryReport,
    InboundReply,
    InboundSink,
    InDoubtSendError,
    OutboundMessage,
    PermanentSendError,
    SendError,
    SendReceipt,
    TransientSendError,
)
from channels.webhook_io import refuse
from warnd.clock import Clock, SystemClock

REPLY_PATH = "/webhooks/tencent/sms/{token}/reply"
STATUS_PATH = "/webhooks/tencent/sms/{token}/status"
OK_BODY = {"result": 0, "errmsg": "OK"}
MAX_ID = 64  # a provider id longer than this is not one (the dedupe key column holds 128)

_T = TypeVar("_T")
_BEIJING = timezone(timedelta(hours=8))
_LOOPBACK = ("127.", "localhost", "[::1]")
_PULL_WINDOW = timedelta(days=7) - timedelta(minutes=5)  # Tencent keeps 7 days of status
_CLOCK_SLACK = 120  # seconds of skew tolerated between our clock and Tencent's

# LimitExceeded.* and InternalError.* are normally worth retrying; these are not.
_PERMANENT_CODES = {
    "LimitExceeded.AppCountryOrRegionInBlacklist",
    "LimitExceeded.PhoneNumberCountLimit",
    "InternalError.SigFieldMissing",
    "InternalError.SigVerificationFail",
    "InternalError.RestApiInterfaceNotExist",
}
_TRANSIENT_PREFIXES = ("LimitExceeded.", "InternalError.", "RequestLimitExceeded")
_RATE_PREFIXES = ("LimitExceeded.", "RequestLimitExceeded")  # frequency and quota limits
_TRANSPORT_CODES = {"ClientNetworkError", "ServerNetworkError"}  # raised by the SDK itself
# Tencent failed part-way (InternalError.Timeout: 请求下发短信超时): the text may have gone out.
_IN_DOUBT_PREFIXES = ("InternalError.",)


def _seconds_to_beijing_midnight() -> float:
    now = datetime.now(_BEIJING)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=5, microsecond=0)
    return (midnight - now).total_seconds()


def _retry_after(code: str) -> float | None:
    if code == "LimitExceeded.PhoneNumberThirtySecondLimit":
        return 30.0
    if code == "LimitExceeded.PhoneNumberOneHourLimit":
        return 3600.0
    if code.endswith("DailyLimit"):  # per-number and per-app day quotas reset at 00:00 +08
        return _seconds_to_beijing_midnight()
    if code.startswith("RequestLimitExceeded"):
        return 1.0
    return None


def classify(
    code: str, message: str, what: str = "send", *, cause: BaseException | None = None
) -> TransientSendError | PermanentSendError:
    """Map a Tencent error code (request-level or per-number SendStatus.Code) to our errors.
    `cause`: the exception under the SDK's ClientNetworkError (a requests error).

    In doubt (the text may have been accepted; the engine looks it up before any resend):
    a non-200 answer (ServerNetworkError: a 5xx from Tencent's gateway after our request was
    written), a network error other than failing to connect (read timeout, reset), and
    InternalError.* (Tencent failed part-way). Definitely not sent: every other error
    envelope, and a connection that was never made (refused, connect timeout)."""
    text = f"tencent {what}: {code}: {message}"
    if code in _PERMANENT_CODES:
        return PermanentSendError(text)
    if code == "ClientNetworkError" and _never_connected(cause):
        return TransientSendError(text, reason="unreachable")
    if code in _TRANSPORT_CODES or code.startswith(_IN_DOUBT_PREFIXES):
        return InDoubtSendError(text, retry_after=_retry_after(code))
    if code.startswith(_TRANSIENT_PREFIXES):
        limited = code.startswith(_RATE_PREFIXES)
        return TransientSendError(text, retry_after=_retry_after(code), reason="rate_limited" if limited else None)
    return PermanentSendError(text)


def _never_connected(exc: BaseException | None) -> bool:
    """The request never left: no connection was made (refused, unreachable, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "NewConnectionError" in repr(exc) or "Failed to establish a new connection" in str(exc)
    return False


def _http_profile(endpoint: str | None, timeout: float) -> HttpProfile:
    # endpoint: None (sms.tencentcloudapi.com), "host[:port]", or with an explicit scheme.
    # A bare loopback endpoint is the simulator, which has no TLS.
    protocol = "https"
    host = endpoint
    if endpoint and "://" in endpoint:
        protocol, _, host = endpoint.partition("://")
    elif endpoint and endpoint.startswith(_LOOPBACK):
        protocol = "http"
    return HttpProfile(protocol=protocol, endpoint=host or None, reqTimeout=max(int(timeout), 1))


class TencentSms(ChannelBase):
    kind = "sms"
    provider = "tencent"
    max_batch = 200  # SendSms accepts at most 200 numbers per request
    rate_per_second = 3000.0  # SendSms default request-rate limit (per account)
    lookup = "exact"  # PullSmsSendStatusByPhoneNumber echoes our SessionContext
    delivery_reports = True  # 状态报告 callbacks
    # PullSmsSendStatus lists a message once the carrier has reported on it: give it time.
    lookup_after = 30.0

    @classmethod
    def from_settings(cls, cfg: Any, *, public_base_url: str, fallback: Any = None) -> TencentSms:
        """From [sms.tencent] (secret_id, secret_key, sdk_app_id, sign_name, template_id, region,
        endpoint, callback_token)."""
        return cls(secret_id=cfg.secret_id, secret_key=cfg.secret_key, sdk_app_id=cfg.sdk_app_id,
                   sign_name=cfg.sign_name, template_id=cfg.template_id, region=cfg.region,
                   endpoint=cfg.endpoint or None, callback_token=cfg.callback_token,
                   timeout=cfg.timeout_seconds)

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        callback_token: str,
        region: str = "ap-guangzhou",
        endpoint: str | None = None,
        timeout: float = 15.0,
        max_workers: int = 16,
        clock: Clock | None = None,
    ) -> None:
        """template_id: the approved one-variable template "{1}".
        callback_token: secret path segment of the callback URLs (≥ 16 characters).
        endpoint: None for sms.tencentcloudapi.com; "127.0.0.1:PORT" for the simulator.
        max_workers: SDK calls in flight at once."""
        if len(callback_token) < 16:
            raise ValueError("callback_token must be a random secret of at least 16 characters")
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.template_id = template_id
        self._token = callback_token.encode("utf-8")
        self._client = sms_client.SmsClient(
            credential.Credential(secret_id, secret_key),
            region,
            ClientProfile(httpProfile=_http_profile(endpoint, timeout)),
        )
        # The SDK's requests.Session pools 10 connections; match the thread count so bulk
        # sends reuse connections instead of discarding them.
        session = getattr(getattr(self._client.request, "conn", None), "_session", None)
        if isinstance(session, requests.Session):
            for scheme in ("http://", "https://"):
                session.mount(scheme, HTTPAdapter(pool_maxsize=max_workers))
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tencent-sms")
        # requests applies reqTimeout to connecting and again to each read.
        self.send_timeout = 2.0 * max(int(timeout), 1)
        self._clock: Clock = clock or SystemClock()

    def callback_urls(self, public_base_url: str) -> dict[str, str]:
        """The two URLs to register in the Tencent SMS console (回调配置)."""
        base = public_base_url.rstrip("/")
        token = self._token.decode()
        return {
            "reply": base + REPLY_PATH.format(token=token),
            "status": base + STATUS_PATH.format(token=token),
        }

    async def _call(self, fn: Callable[..., _T], request: Any, what: str) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, request))
        except TencentCloudSDKException as exc:
            raise classify(str(exc.code), str(exc.message), what, cause=exc.__context__) from exc

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        req = models.SendSmsRequest()
        req.PhoneNumberSet = [msg.to]
        req.SmsSdkAppId = self.sdk_app_id
        req.SignName = self.sign_name
        req.TemplateId = self.template_id
        req.TemplateParamSet = [msg.body]
        # Echoed back by PullSmsSendStatus*, which is how find_sent recognises the message.
        req.SessionContext = msg.idempotency_key
        resp = await self._call(self._client.SendSms, req, "send")
        statuses = resp.SendStatusSet or []
        if not statuses:
            raise TransientSendError("tencent send: empty SendStatusSet")
        status = statuses[0]
        if status.Code == "Ok":
            return SendReceipt(provider=self.provider, provider_id=str(status.SerialNo))
        raise classify(str(status.Code), str(status.Message))

    async def send_many(self, msgs: Sequence[OutboundMessage], context: str) -> list[SendReceipt | SendError]:
        """Mass SMS: one request, one text, up to 200 numbers; one status per number."""
        if not msgs:
            return []
        if len(msgs) > self.max_batch or len({m.body for m in msgs}) != 1:
            raise ValueError("send_many takes up to 200 messages that share one body")
        req = models.SendSmsRequest()
        req.PhoneNumberSet = [m.to for m in msgs]
        req.SmsSdkAppId = self.sdk_app_id
        req.SignName = self.sign_name
        req.TemplateId = self.template_id
        req.TemplateParamSet = [msgs[0].body]
        req.SessionContext = context
        try:
            resp = await self._call(self._client.SendSms, req, "send")
        except SendError as e:
            return [e for _ in msgs]
        by_phone = {str(st.PhoneNumber): st for st in resp.SendStatusSet or []}
        out: list[SendReceipt | SendError] = []
        for m in msgs:
            st = by_phone.get(m.to)
            if st is None:
                out.append(TransientSendError("tencent send: no status for this number"))
            elif st.Code == "Ok":
                out.append(SendReceipt(provider=self.provider, provider_id=str(st.SerialNo)))
            else:
                out.append(classify(str(st.Code), str(st.Message)))
        return out

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        """Search the status reports for msg.to since `since` (wall-clock time) for our
        SessionContext. Tencent only lists messages the carrier has reported on, and echoes
        SessionContext only once Tencent has enabled it for the account."""
        now = time.time()
        begin = max(since.timestamp() - _CLOCK_SLACK, now - _PULL_WINDOW.total_seconds())
        req = models.PullSmsSendStatusByPhoneNumberRequest()
        req.BeginTime = int(begin)
        req.EndTime = int(now) + _CLOCK_SLACK
        req.Offset = 0
        req.Limit = 100
        req.PhoneNumber = msg.to
        req.SmsSdkAppId = self.sdk_app_id
        resp = await self._call(self._client.PullSmsSendStatusByPhoneNumber, req, "find_sent")
        for status in resp.PullSmsSendStatusSet or []:
            if status.SessionContext == msg.idempotency_key and status.SerialNo:
                return SendReceipt(provider=self.provider, provider_id=str(status.SerialNo))
        return None

    # -- webhooks ------------------------------------------------------------------------

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        async def reply(request: web.Request) -> web.Response:
            if not self._token_ok(request):
                return refuse(403, "Forbidden", "unknown callback URL")
            payload = await _json(request)
            if isinstance(payload, web.Response):
                return payload
            reply = self._parse_reply(payload)
            if reply is None:
                return refuse(400, "Bad request", "a reply callback needs mobile (digits), text and time")
            await sink.on_reply(reply)
            return web.json_response(OK_BODY)

        async def status(request: web.Request) -> web.Response:
            if not self._token_ok(request):
                return refuse(403, "Forbidden", "unknown callback URL")
            payload = await _json(request)
            if isinstance(payload, web.Response):
                return payload
            if isinstance(payload, dict):  # documented as an array; tolerate a lone object
                payload = [payload]
            reports = (
                [self._parse_report(x) for x in payload] if isinstance(payload, list) else [None]
            )
            if any(r is None for r in reports):
                # Reject the whole batch so nothing is half-applied; Tencent re-sends it.
                return refuse(400, "Bad request", "every status report needs sid and report_status "
                                                  "SUCCESS or FAIL")
            await sink.on_reports([r for r in reports if r is not None])
            return web.json_response(OK_BODY)

        return [
            web.post(REPLY_PATH, reply),
            web.post(STATUS_PATH, status),
        ]

    def _token_ok(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.match_info.get("token", "").encode("utf-8"), self._token)

    def _parse_reply(self, p: Any) -> InboundReply | None:
        if not isinstance(p, dict):
            return None
        mobile, nationcode, text, sent = (
            p.get("mobile"),
            p.get("nationcode"),
            p.get("text"),
            p.get("time"),
        )
        if not (isinstance(mobile, str) and mobile.isascii() and mobile.isdigit() and len(mobile) <= 20
                and isinstance(text, str)):
            return None
        nationcode = str(nationcode or "86").lstrip("+")
        # Tencent gives the reply no id: mobile + text + time identifies a re-delivery.
        digest = hashlib.sha256(f"{nationcode}|{mobile}|{text}|{sent}".encode()).hexdigest()
        return InboundReply(
            provider=self.provider,
            dedupe_key=digest[:40],
            from_address=f"+{nationcode}{mobile}",
            text=text,
            received_at=self._clock.now(),
        )

    def _parse_report(self, p: Any) -> DeliveryReport | None:
        if (
            not isinstance(p, dict)
            or not p.get("sid")
            or len(str(p["sid"])) > MAX_ID
            or p.get("report_status") not in ("SUCCESS", "FAIL")
        ):
            return None
        ok = p["report_status"] == "SUCCESS"
        error = (
            None if ok else " ".join(str(p.get(k) or "") for k in ("errmsg", "description")).strip()
        )
        return DeliveryReport(
            provider=self.provider,
            dedupe_key=f"{p['sid']}:{p['report_status']}",
            provider_id=str(p["sid"]),
            delivered=ok,
            final=True,  # Tencent reports only final carrier outcomes
            error=error or None,
        )

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _json(request: web.Request) -> Any:
    """The JSON body, or a 400 naming why it is not usable JSON."""
    raw = await request.read()
    try:
        payload = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return refuse(400, "Bad request", f"the body is not valid UTF-8 (byte {e.start})")
    except ValueError as e:
        return refuse(400, "Bad request", f"the body is not JSON: {e}")
    except RecursionError:
        return refuse(400, "Bad request", "the JSON body is nested too deeply")
    try:  # "\ud800" is valid JSON but no text: it could not be stored
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return refuse(400, "Bad request", "the body contains an unpaired surrogate (\\uD800-\\uDFFF)")
    return payload


__all__ = ["OK_BODY", "REPLY_PATH", "STATUS_PATH", "TencentSms", "classify"]
