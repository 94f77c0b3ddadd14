"""A local stand-in for Tencent Cloud SMS API 2021-01-11 (sms.tencentcloudapi.com).

Speaks what the official `tencentcloud-sdk-python-sms` SDK sends: JSON POST to "/",
action in X-TC-Action, signed with TC3-HMAC-SHA256. The signature is verified against the
configured SecretKey exactly as Tencent does (canonical request over content-type and host),
and answers use Tencent's envelopes: {"Response": {..., "RequestId"}} on success and
{"Response": {"Error": {"Code", "Message"}, "RequestId"}} on failure, always HTTP 200 with
Content-Type exactly "application/json" (the SDK only looks for errors under that type).

Faults for the fault tests (docs/sms-providers.md, "Simulators"): every accepted number and
text is appended to `log_path` (one JSON line, flushed and fsynced) *before* the answer is
sent, so the log is what handsets received even when the answer is lost; 500s (before or
after accepting), answers held past the SDK's timeout after accepting (`answer_late_next`,
`late_rate`), and outages (`outage_start` / `outage_stop`: connections refused, or 503s).

It also plays Tencent calling us: the 上行回复 (reply) callback, one JSON object, and the
状态报告 (delivery status) callback, a JSON array. Tencent signs neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from aiohttp import ClientError, web

from devtools.simulators import SimMessage, SimulatorBase

API_VERSION = "2021-01-11"
SERVICE = "sms"
# Codes Tencent reports per phone number inside SendStatusSet (HTTP call itself succeeds).
_PER_NUMBER_PREFIXES = (
    "LimitExceeded.PhoneNumber",
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberParseFail",
)
_PHONE = re.compile(r"^\+\d{6,15}$")
BEIJING = timezone(timedelta(hours=8))  # callbacks carry local wall-clock times


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_signature(
    secret_key: str, *, content_type: str, host: str, payload: bytes, timestamp: int
) -> str:
    """Tencent's TC3-HMAC-SHA256 signature of a POST to "/" (written from the spec, not
    borrowed from the SDK, so the simulator really checks the SDK's work)."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            _sha256_hex(payload),
        ]
    )
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            f"{day}/{SERVICE}/tc3_request",
            _sha256_hex(canonical.encode()),
        ]
    )
    key = _hmac(("TC3" + secret_key).encode("utf-8"), day)
    key = _hmac(_hmac(key, SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def split_phone(phone: str) -> tuple[str, str]:
    """+8613800000000 → ("86", "13800000000"); bare numbers are mainland China, as Tencent
    treats them."""
    if not phone.startswith("+"):
        return "86", phone
    digits = phone[1:]
    for cc in ("86", "852", "853", "886", "1"):
        if digits.startswith(cc):
            return cc, digits[len(cc) :]
    return digits[:2], digits[2:]


def sms_fee(sign_name: str, content: str) -> int:
    """Billed segments: 【签名】+正文 up to 70 characters is one; longer is 67 per segment."""
    n = len(f"【{sign_name}】{content}")
    return 1 if n <= 70 else math.ceil(n / 67)


class TencentSmsApi(SimulatorBase):
    def __init__(
        self,
        secret_id: str = "AKIDsimulated",
        secret_key: str = "simulated-secret-key",
        sdk_app_id: str = "1400000000",
        sign_name: str = "某县应急管理局",
        templates: dict[str, str] | None = None,
        *,
        auto_report: bool = True,
        status_callback_url: str | None = None,
        max_param_chars: int | None = None,
        undeliverable_numbers: Iterable[str] = (),
        log_path: Path | str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        # Approved body templates; the default one-variable template is what warnd uses.
        self.templates = templates if templates is not None else {"100001": "{1}"}
        # Carrier status report arrives at once (needed by PullSmsSendStatusByPhoneNumber).
        self.auto_report = auto_report
        self.status_callback_url = status_callback_url  # where to push 状态报告, if anywhere
        # Tencent's standard cap on one template variable is 6 characters; an emergency
        # account must have it lifted. Set this to reproduce the rejection.
        self.max_param_chars = max_param_chars
        self.undeliverable_numbers: set[str] = set(undeliverable_numbers)
        # The fault harness's evidence: every accepted number and text, one JSON line each,
        # appended (and flushed) before the answer leaves — whatever the engine then records.
        self.callbacks_sent = 0
        self._serial = 0
        # Crash tests: SendSms requests to hold before answering (see hold_next_sends).
        self._holds: deque[bool] = deque()
        self._release = asyncio.Event()
        self.held = 0  # SendSms requests currently held
        self.held_phones: list[str] = []  # numbers in the held requests, accepted or not
        # Fault injection (fault tests): see the module docstring.
        self.log_path = Path(log_path) if log_path is not None else None
        self.rng = random.Random(seed)
        self.late_rate = 0.0  # share of SendSms requests accepted, then answered late_seconds late
        self.error_rate = 0.0  # share of SendSms requests answered HTTP 500 (accepted or not, half each)
        self.late_seconds = 30.0  # longer than the SDK's timeout (15 s by default)
        self._late: deque[float] = deque()  # answer_late_next
        self._accept_then_fail: deque[int] = deque()  # accept_then_fail_next
        self._late_release = asyncio.Event()
        self.outage: Literal["", "refuse", "503"] = ""
        self.answered_late = 0  # requests accepted and answered late
        self.failed_after_accept = 0  # requests accepted and answered with an HTTP error
        self.refused_in_outage = 0  # requests answered 503 during an outage
        self._site: web.TCPSite | None = None
        self._host = "127.0.0.1"

    # -- fault injection ---------------------------------------------------------------------

    def answer_late_next(self, count: int = 1, seconds: float | None = None) -> None:
        """The next `count` SendSms requests are accepted (recorded, logged), and answered only
        after `seconds` (default late_seconds) or `release_late()`: past the SDK's timeout."""
        self._late.extend([self.late_seconds if seconds is None else seconds] * count)
        self._late_release.clear()

    def accept_then_fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next `count` SendSms requests are accepted (recorded, logged), then answered
        with this HTTP status and no envelope (a gateway error after the work was done)."""
        self._accept_then_fail.extend([status] * count)

    def release_late(self) -> None:
        """Answer every late request now."""
        self._late_release.set()

    async def outage_start(self, mode: Literal["refuse", "503"] = "refuse") -> None:
        """Provider down: "refuse" closes the listening socket (connections refused: nothing
        can have been sent); "503": the gateway answers every API call 503, accepting nothing."""
        self.outage = mode
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        await self._changed()

    async def outage_stop(self) -> None:
        """Provider back, on the same address."""
        if self.outage == "refuse" and self._runner is not None and self._site is None:
            self._site = web.TCPSite(self._runner, self._host, self.port, reuse_address=True)
            await self._site.start()
        self.outage = ""
        await self._changed()

    def log_lines(self) -> list[dict[str, Any]]:
        """What the accepted-messages log holds (one dict per accepted number and text)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text("utf-8").splitlines() if line]

    def _append_log(self, msgs: list[SimMessage]) -> None:
        if self.log_path is None:
            return
        lines = "".join(json.dumps({"at": m.time.isoformat(), "to": m.to, "text": m.body, "serial": m.id,
                                    "context": m.context}, ensure_ascii=False) + "\n" for m in msgs)
        with self.log_path.open("a", encoding="utf-8") as f:  # on disk before we answer
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def hold_next_sends(self, *accept: bool) -> None:
        """Hold the next SendSms requests, one per flag, until `release_held()`.

        accept=True: the batch is accepted and recorded (it is in `messages` and its status
        can be pulled), only the HTTP answer is held: the caller cannot know it was sent.
        accept=False: the request reached the gateway but is never processed; on release it
        is answered with an error and nothing is recorded.
        A crash test kills the sender while requests are held."""
        self._holds.extend(accept)
        self._release.clear()

    async def release_held(self) -> None:
        """Answer every held request (the client may be long gone) and stop holding."""
        self._holds.clear()
        self._release.set()
        await self._changed()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await super().start(host, port)
        self._host = host
        assert self._runner is not None
        self._site = next(iter(self._runner.sites), None)  # type: ignore[assignment]

    async def stop(self) -> None:
        self._release.set()  # held requests must not keep the server's shutdown waiting
        self._late_release.set()
        await super().stop()

    # -- server --------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/", self._dispatch)
        return app

    @staticmethod
    def _reply(payload: dict[str, Any]) -> web.Response:
        payload["RequestId"] = str(uuid.uuid4())
        body = json.dumps({"Response": payload}, ensure_ascii=False).encode("utf-8")
        # Exactly "application/json", no charset: the SDK's error check compares the type.
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    def _error(self, code: str, message: str) -> web.Response:
        return self._reply({"Error": {"Code": code, "Message": message}})

    def _auth_error(self, request: web.Request, payload: bytes) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        m = re.fullmatch(
            r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([^/]+)/tc3_request, "
            r"SignedHeaders=content-type;host, Signature=([0-9a-f]{64})",
            auth,
        )
        if m is None:
            return self._error(
                "AuthFailure.SignatureFailure", "The provided credentials could not be validated."
            )
        secret_id, day, service, signature = m.groups()
        try:
            timestamp = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return self._error("AuthFailure.SignatureFailure", "Invalid X-TC-Timestamp.")
        if abs(time.time() - timestamp) > 300:
            return self._error("AuthFailure.SignatureExpire", "Signature expired.")
        if not hmac.compare_digest(secret_id, self.secret_id):
            return self._error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        expected = tc3_signature(
            self.secret_key,
            content_type=request.headers.get("Content-Type", ""),
            host=request.host,
            payload=payload,
            timestamp=timestamp,
        )
        ok_scope = service == SERVICE and day == datetime.fromtimestamp(timestamp, UTC).strftime(
            "%Y-%m-%d"
        )
        if not ok_scope or not hmac.compare_digest(signature, expected):
            return self._error(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature is correct.",
            )
        return None

    async def _dispatch(self, request: web.Request) -> web.Response:
        self.requests_seen += 1
        payload = await request.read()
        if (refused := self._auth_error(request, payload)) is not None:
            return refused
        if request.headers.get("X-TC-Version") != API_VERSION:
            return self._error("InvalidParameter", f"Version must be {API_VERSION}.")
        try:
            params = json.loads(payload)
        except ValueError:
            return self._error("FailedOperation.JsonParseFail", "JSON parse failed.")
        if self.outage:
            self.refused_in_outage += 1
            return web.Response(status=503, text="Service Unavailable")
        fault = self._take_fault()
        if isinstance(fault, int):  # gateway trouble: a non-200 with no envelope
            return web.Response(status=fault, text="Bad Gateway")
        if fault is not None and not str(fault).startswith(_PER_NUMBER_PREFIXES):
            return self._error(str(fault), "injected fault")
        action = request.headers.get("X-TC-Action", "")
        if action == "SendSms":
            return await self._send_sms(params, per_number_fault=fault)
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull_status(params)
        return self._error("InvalidAction", f"Action {action!r} is not supported by the simulator.")

    async def _send_sms(self, p: dict[str, Any], per_number_fault: str | None) -> web.Response:
        if str(p.get("SmsSdkAppId")) != self.sdk_app_id:
            return self._error(
                "UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed."
            )
        if p.get("SignName") != self.sign_name:
            return self._error(
                "FailedOperation.SignatureIncorrectOrUnapproved",
                "signature unapproved or format error.",
            )
        template = self.templates.get(str(p.get("TemplateId")))
        if template is None:
            return self._error(
                "FailedOperation.TemplateIncorrectOrUnapproved", "template unapproved or not exist."
            )
        values = [str(v) for v in p.get("TemplateParamSet") or []]
        if len(values) != len(re.findall(r"\{\d+\}", template)):
            return self._error(
                "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                "request content does not match the template content.",
            )
        if self.max_param_chars is not None and any(len(v) > self.max_param_chars for v in values):
            return self._error(
                "InvalidParameterValue.TemplateParameterLengthLimit",
                "the length of a single template variable exceeds the limit.",
            )
        phones = [str(x) for x in p.get("PhoneNumberSet") or []]
        if not phones:
            return self._error("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty.")
        if len(phones) > 200:
            return self._error(
                "LimitExceeded.PhoneNumberCountLimit", "more than 200 numbers in one request."
            )
        late = self._late.popleft() if self._late else None
        fail_after = self._accept_then_fail.popleft() if self._accept_then_fail else None
        if late is None and fail_after is None and (self.late_rate or self.error_rate):
            roll = self.rng.random()
            if roll < self.late_rate:
                late = self.late_seconds
            elif roll < self.late_rate + self.error_rate:
                if self.rng.random() < 0.5:
                    return web.Response(status=500, text="Internal Server Error")  # nothing accepted
                fail_after = 500
        hold = self._holds.popleft() if self._holds else None
        if hold is False:  # received, never processed: the caller is left in doubt
            await self._hold(phones)
            return self._error("InternalError.Timeout", "the request was not processed")
        content = re.sub(r"\{(\d+)\}", lambda m: values[int(m.group(1)) - 1], template)
        context = p.get("SessionContext") or ""
        now = datetime.now(UTC)
        statuses: list[dict[str, Any]] = []
        accepted: list[SimMessage] = []
        for raw in phones:
            phone = raw if raw.startswith("+") else "+86" + raw
            cc, _ = split_phone(phone)
            status: dict[str, Any] = {
                "SerialNo": "",
                "PhoneNumber": phone,
                "Fee": 0,
                "SessionContext": context,
                "IsoCode": {"86": "CN", "1": "US", "852": "HK", "853": "MO", "886": "TW"}.get(
                    cc, "XX"
                ),
            }
            if per_number_fault is not None:
                status.update(Code=per_number_fault, Message="injected fault")
            elif phone in self.fail_numbers or not _PHONE.match(phone):
                status.update(
                    Code="InvalidParameterValue.IncorrectPhoneNumber",
                    Message="incorrect number format",
                )
            else:
                self._serial += 1
                status.update(
                    SerialNo=f"2433:{int(now.timestamp())}{self._serial:015d}",
                    Fee=sms_fee(self.sign_name, content),
                    Code="Ok",
                    Message="send success",
                )
                msg = SimMessage(
                    to=phone,
                    body=content,
                    id=status["SerialNo"],
                    context=context or None,
                    time=now,
                    status="sent",
                    extra={
                        "sign": self.sign_name,
                        "template_id": str(p.get("TemplateId")),
                        "fee": status["Fee"],
                    },
                )
                if self.auto_report:
                    self._mark_reported(msg)
                accepted.append(msg)
            statuses.append(status)
        if accepted:
            self._append_log(accepted)  # on disk before anything is answered
            await self._record(accepted)
            if self.auto_report and self.status_callback_url:
                self._spawn(self._push_reports(self.status_callback_url, accepted))
        if hold:  # accepted and recorded; only the answer is held back
            await self._hold(phones)
        if fail_after is not None:
            self.failed_after_accept += 1
            return web.Response(status=fail_after, text="Internal Server Error")
        if late is not None:
            self.answered_late += 1
            await self._changed()
            try:
                async with asyncio.timeout(late):
                    await self._late_release.wait()
            except TimeoutError:
                pass
        return self._reply({"SendStatusSet": statuses})

    async def _hold(self, phones: list[str]) -> None:
        self.held += 1
        self.held_phones.extend(phones)
        await self._changed()
        try:
            await self._release.wait()
        finally:
            self.held -= 1

    def _mark_reported(self, msg: SimMessage, ok: bool | None = None) -> None:
        ok = msg.to not in self.undeliverable_numbers if ok is None else ok
        msg.status = "delivered" if ok else "failed"
        msg.extra["report"] = {
            "report_status": "SUCCESS" if ok else "FAIL",
            "errmsg": "DELIVRD" if ok else "MK:0001",
            "description": "用户短信送达成功" if ok else "用户手机关机或不在服务区",
            "time": datetime.now(UTC),
        }

    def _pull_status(self, p: dict[str, Any]) -> web.Response:
        if str(p.get("SmsSdkAppId")) != self.sdk_app_id:
            return self._error(
                "UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed."
            )
        limit = int(p.get("Limit") or 0)
        if not 0 < limit <= 100:
            return self._error("InvalidParameterValue.LimitVerifyFail", "Limit must be 1..100.")
        phone = str(p.get("PhoneNumber") or "")
        begin = int(p.get("BeginTime") or 0)
        end = int(p.get("EndTime") or time.time())
        out = []
        for m in self.messages:
            report = m.extra.get("report")
            if m.to != phone or report is None or not begin <= m.time.timestamp() <= end + 1:
                continue
            cc, subscriber = split_phone(m.to)
            out.append(
                {
                    "UserReceiveTime": int(report["time"].timestamp()),
                    "CountryCode": cc,
                    "SubscriberNumber": subscriber,
                    "PhoneNumber": m.to,
                    "SerialNo": m.id,
                    "ReportStatus": report["report_status"],
                    "Description": report["description"],
                    "SessionContext": m.context or "",
                }
            )
            if len(out) >= limit:
                break
        return self._reply({"PullSmsSendStatusSet": out})

    # -- Tencent calling us -----------------------------------------------------------------

    async def _post_json(self, url: str, payload: Any) -> tuple[int, str]:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        async with self._http().post(url, data=data, headers=headers) as resp:
            self.callbacks_sent += 1
            return resp.status, await resp.text()

    async def send_reply(
        self,
        callback_url: str,
        mobile: str,
        text: str,
        *,
        time_: int | None = None,
        sign: str | None = None,
        extend: str = "",
    ) -> tuple[int, str]:
        """A handset replies (上行短信): post Tencent's reply callback JSON to our webhook.
        `mobile` may be E.164 (+8613800000000) or a bare mainland number."""
        nationcode, subscriber = split_phone(mobile)
        return await self._post_json(
            callback_url,
            {
                "extend": extend,
                "mobile": subscriber,
                "nationcode": nationcode,
                "sign": self.sign_name if sign is None else sign,
                "text": text,
                "time": int(time.time()) if time_ is None else time_,
            },
        )

    async def send_status_reports(
        self,
        callback_url: str,
        messages: Iterable[SimMessage] | None = None,
        *,
        success: bool | None = None,
    ) -> tuple[int, str]:
        """Post one 状态报告 callback (a JSON array) for these messages (default: all).
        `success` forces SUCCESS/FAIL; None keeps each message's report (or makes one)."""
        batch = list(self.messages if messages is None else messages)
        for m in batch:
            if success is not None or "report" not in m.extra:
                self._mark_reported(m, success)
        await self._changed()
        return await self._post_json(callback_url, [self._report_json(m) for m in batch])

    async def _push_reports(self, url: str, batch: list[SimMessage]) -> None:
        try:
            await self._post_json(url, [self._report_json(m) for m in batch])
        # Our webhook is down: Tencent would retry later; the simulator just notes it.
        except (ClientError, TimeoutError) as exc:
            for m in batch:
                m.extra["callback_error"] = repr(exc)

    @staticmethod
    def _report_json(m: SimMessage) -> dict[str, Any]:
        report = m.extra["report"]
        cc, subscriber = split_phone(m.to)
        return {
            "user_receive_time": report["time"].astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "nationcode": cc,
            "mobile": subscriber,
            "report_status": report["report_status"],
            "errmsg": report["errmsg"],
            "description": report["description"],
            "sid": m.id,
        }
