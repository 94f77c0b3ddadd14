"""WeCom (企业微信): application messages with a 收到 button, its callback, and group robots.

WeComApp sends each official (roster `wecom_userid`) a template card of type
button_interaction through `message/send`: the warning text, a 收到 button (callback key
"confirm") and, when the text carries a confirm link, a 反馈 button opening it. Tapping 收到
makes WeCom POST an encrypted, signed `template_card_event` to our callback URL; we verify
msg_signature, decrypt (AES-256-CBC, channels.wecom_crypto), check the timestamp and that
this exact callback was not seen before (replay), and confirm the call of the card's task id
as its recipient. The answer replaces the button with "已确认". The URL-verification
handshake (GET with echostr) is answered the same way.

The access token is cached until shortly before it expires and fetched again (once, under a
lock) when WeCom reports it invalid or expired. Sends are spaced to `max_per_second`, and a
member gets at most `per_user_per_minute` cards a minute (WeCom drops more than 30 per minute
to one member silently): the excess is a TransientSendError with a retry time.

WeComRobot posts markdown to group robots (群机器人 webhook/send): awareness for township and
village work groups, no confirmation; 20 messages a minute per robot are respected by waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import ParseError, fromstring

from channels.base import (
    ActionSink,
    ChannelBase,
    InboundAction,
    InboundSink,
    OutboundMessage,
    PermanentSendError,
    SendReceipt,
    TransientSendError,
)
from channels.webhook_io import Outcomes, confirmed, refuse
from channels.wecom_crypto import WeComCrypto, WeComCryptoError
from warnd.clock import Clock, SystemClock

CALLBACK_PATH = "/webhooks/wecom/callback"
API = "https://qyapi.weixin.qq.com"
CONFIRM_KEY = "confirm"
LINK_RE = re.compile(r"https?://\S+/c/[A-Za-z0-9_-]{32}")
TOKEN_ERRORS = {40014, 42001, 40082}  # invalid / expired access_token: fetch a new one
TRANSIENT = {-1, 45009, 45033, 45011, 45047}  # system busy, API frequency / concurrency limits
RATE_LIMITED = {45009, 45011, 45033, 45047}  # frequency and concurrency limits (-1: busy)
MAX_SKEW = 300  # seconds: an older (or future) callback timestamp is refused


def _xml(raw: bytes) -> Element | web.Response:
    """A callback's XML, or a 400 naming the problem. WeCom sends small UTF-8 documents
    with no DTD; decoding here keeps a declared codec away from expat."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return refuse(400, "Bad request", f"the body is not valid UTF-8 (byte {e.start})")
    try:
        return fromstring(text, forbid_dtd=True)
    except DTDForbidden:
        return refuse(400, "Bad request", "a DTD (<!DOCTYPE>) is not allowed in a callback")
    except DefusedXmlException as e:
        return refuse(400, "Bad request", f"forbidden XML construct: {e}")
    except ParseError as e:
        return refuse(400, "Bad request", f"not well-formed XML: {e}")


def task_id_for(idempotency_key: str) -> str:
    """WeCom task ids: ≤128 of [0-9A-Za-z_-@], unique per application; ours names the delivery."""
    return "warnd-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def split_link(body: str) -> tuple[str, str | None]:
    found = LINK_RE.search(body)
    if not found:
        return body, None
    text = (body[: found.start()] + body[found.end():]).rstrip("：: ")
    return text, found.group(0)


class _Pacer:
    """At most `rate` starts per second (process-wide for this channel)."""

    def __init__(self, rate: float):
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap


class _Client:
    def __init__(self, api_base_url: str | None, timeout: float):
        self.base = (api_base_url or API).rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def call(self, method: str, path: str, params: Mapping[str, str], body: Any = None) -> dict[str, Any]:
        try:
            async with self.session().request(method, self.base + path, params=params, json=body) as r:
                if r.status == 429 or r.status >= 500:
                    raise TransientSendError(f"wecom {path}: HTTP {r.status}",
                                             reason="rate_limited" if r.status == 429 else None)
                if r.status >= 400:
                    raise PermanentSendError(f"wecom {path}: HTTP {r.status}")
                data = await r.json(content_type=None)
        except aiohttp.ClientConnectorError as e:
            raise TransientSendError(f"wecom {path}: cannot connect: {e!r}", reason="unreachable") from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise TransientSendError(f"wecom {path}: network error: {e!r}") from e
        except ValueError as e:
            raise TransientSendError(f"wecom {path}: not JSON") from e
        if not isinstance(data, dict):
            raise TransientSendError(f"wecom {path}: unexpected answer")
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error(path: str, data: Mapping[str, Any]) -> Exception:
    code = int(data.get("errcode", -1))
    text = f"wecom {path}: errcode {code}: {data.get('errmsg', '')}"
    if code in TRANSIENT:
        return TransientSendError(text, retry_after=60.0 if code in (45009, 45011, 45047) else None,
                                  reason="rate_limited" if code in RATE_LIMITED else None)
    return PermanentSendError(text)


class WeComApp(ChannelBase):
    kind = "wecom"
    provider = "wecom"
    max_batch = 1  # a card carries one official's task id
    lookup = "none"  # WeCom cannot be asked; its duplicate check makes a resend safe (find_sent)

    @classmethod
    def from_settings(cls, cfg: Any, *, public_base_url: str, fallback: Any = None) -> WeComApp:
        """From [wecom] (corp_id, corp_secret, agent_id, token, encoding_aes_key, ...)."""
        missing = [k for k in ("corp_id", "corp_secret", "token", "encoding_aes_key") if not getattr(cfg, k)]
        if missing or not cfg.agent_id:
            raise ValueError(f"set {', '.join(missing + ([] if cfg.agent_id else ['agent_id']))}")
        try:
            return cls(corp_id=cfg.corp_id, corp_secret=cfg.corp_secret, agent_id=cfg.agent_id, token=cfg.token,
                       encoding_aes_key=cfg.encoding_aes_key, api_base_url=cfg.api_base_url or None,
                       max_per_second=cfg.max_per_second, per_user_per_minute=cfg.per_user_per_minute)
        except ValueError as e:
            raise ValueError(f"encoding_aes_key: {e}") from e

    def __init__(
        self, *, corp_id: str, corp_secret: str, agent_id: int, token: str, encoding_aes_key: str,
        api_base_url: str | None = None, timeout: float = 15.0, max_per_second: float = 20.0,
        per_user_per_minute: int = 30, source: str = "预警叫应", clock: Clock | None = None,
    ) -> None:
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.crypto = WeComCrypto(token, encoding_aes_key, corp_id)
        self.source = source
        self.per_user_per_minute = per_user_per_minute
        self.token_fetches = 0
        self._client = _Client(api_base_url, timeout)
        self._pacer = _Pacer(max_per_second)
        self.rate_per_second = max_per_second
        self._sent_to: dict[str, deque[float]] = defaultdict(deque)
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self._seen: dict[str, float] = {}  # msg_signature -> when (replay window)
        self._outcomes = Outcomes()
        self._clock: Clock = clock or SystemClock()

    # -- access token --------------------------------------------------------------------

    async def access_token(self, stale: str | None = None) -> str:
        """The cached token; a new one when it is about to expire or `stale` was refused."""
        async with self._token_lock:
            if self._token and self._token != stale and time.monotonic() < self._token_until:
                return self._token
            data = await self._client.call("GET", "/cgi-bin/gettoken",
                                           {"corpid": self.corp_id, "corpsecret": self.corp_secret})
            if data.get("errcode", 0) != 0 or not data.get("access_token"):
                raise _error("gettoken", data)
            self.token_fetches += 1
            self._token = str(data["access_token"])
            ttl = float(data.get("expires_in", 7200))
            self._token_until = time.monotonic() + max(ttl - 300, ttl / 2)
            return self._token

    async def _api(self, path: str, body: Any) -> dict[str, Any]:
        token = await self.access_token()
        for attempt in range(2):
            await self._pacer.wait()
            data = await self._client.call("POST", path, {"access_token": token}, body)
            if int(data.get("errcode", 0)) in TOKEN_ERRORS and attempt == 0:
                token = await self.access_token(stale=token)
                continue
            return data
        return data

    # -- sending -------------------------------------------------------------------------

    def card(self, msg: OutboundMessage) -> dict[str, Any]:
        text, link = split_link(msg.body)
        head = re.match(r"^((?:【[^】]*】)+)", text)
        title = re.sub(r"[【】]+", " ", head.group(1)).strip() if head else "预警"
        buttons: list[dict[str, Any]] = [{"text": "收到", "style": 1, "key": CONFIRM_KEY}]
        card: dict[str, Any] = {
            "card_type": "button_interaction",
            "source": {"desc": self.source, "desc_color": 2},
            "main_title": {"title": title[:26], "desc": "请点“收到”确认"},
            "sub_title_text": text[:300],
            "task_id": task_id_for(msg.idempotency_key),
            "button_list": buttons,
        }
        if link:
            buttons.append({"text": "反馈", "style": 2, "type": 1, "url": link})
            card["card_action"] = {"type": 1, "url": link}
        return card

    def _throttle(self, userid: str) -> None:
        now = time.monotonic()
        sent = self._sent_to[userid]
        while sent and now - sent[0] >= 60:
            sent.popleft()
        if len(sent) >= self.per_user_per_minute:
            raise TransientSendError(f"wecom: {self.per_user_per_minute}/min to {userid} reached",
                                     retry_after=60 - (now - sent[0]) + 0.5, reason="rate_limited")
        sent.append(now)

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        if not msg.to:
            raise PermanentSendError("wecom: no WeCom userid on the roster for this person")
        self._throttle(msg.to)
        card = self.card(msg)
        data = await self._api("/cgi-bin/message/send", {
            "touser": msg.to, "msgtype": "template_card", "agentid": self.agent_id, "template_card": card,
            "enable_duplicate_check": 1, "duplicate_check_interval": 1800,
        })
        if int(data.get("errcode", 0)) != 0:
            raise _error("message/send", data)
        if data.get("invaliduser"):
            raise PermanentSendError(f"wecom message/send: invalid user {data['invaliduser']}")
        return SendReceipt(provider=self.provider, provider_id=card["task_id"])

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        """WeCom cannot be asked whether a card went out. A resend after a crash carries the
        same task id and content, and `enable_duplicate_check` (30 min) makes WeCom drop it,
        so resending is safe: None."""
        return None

    # -- callback ------------------------------------------------------------------------

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        actions = cast(ActionSink, sink)

        async def post(request: web.Request) -> web.Response:
            return await self._on_callback(request, actions)

        return [web.get(CALLBACK_PATH, self._on_verify), web.post(CALLBACK_PATH, post)]

    def _fresh(self, request: web.Request, encrypted: str) -> web.Response | None:
        """Signature, timestamp window and replay check; None when the request may proceed."""
        q = request.query
        sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        if not (sig and ts and nonce and encrypted) or not (sig + ts + nonce + encrypted).isascii() \
                or not self.crypto.verify(sig, ts, nonce, encrypted):
            return refuse(403, "Forbidden", "invalid msg_signature")
        try:
            skew = abs(time.time() - int(ts))
        except ValueError:
            return refuse(403, "Forbidden", "invalid timestamp")
        if skew > MAX_SKEW:
            return refuse(403, "Forbidden", "stale timestamp")
        now = time.monotonic()
        for k, t in list(self._seen.items()):
            if now - t > 2 * MAX_SKEW:
                del self._seen[k]
        if sig in self._seen:
            return refuse(403, "Forbidden", "replayed callback")
        self._seen[sig] = now
        return None

    async def _on_verify(self, request: web.Request) -> web.Response:
        echostr = request.query.get("echostr", "")
        if (refused := self._fresh(request, echostr)) is not None:
            return refused
        try:
            return web.Response(text=self.crypto.decrypt(echostr))
        except WeComCryptoError:
            return refuse(403, "Forbidden", "cannot decrypt echostr")

    async def _on_callback(self, request: web.Request, sink: ActionSink) -> web.Response:
        outer = _xml(await request.read())
        if isinstance(outer, web.Response):
            return outer
        encrypted = (outer.findtext("Encrypt") or "").strip()
        if (refused := self._fresh(request, encrypted)) is not None:
            return refused
        try:
            event = _xml(self.crypto.decrypt(encrypted).encode("utf-8"))
        except WeComCryptoError:
            return refuse(403, "Forbidden", "cannot decrypt")
        if isinstance(event, web.Response):
            return event
        user = (event.findtext("FromUserName") or "").strip()
        if (event.findtext("Event") or "").strip() != "template_card_event" or \
                (event.findtext("EventKey") or "").strip() != CONFIRM_KEY:
            return web.Response(text="")  # other events: acknowledged, nothing to do
        task_id = (event.findtext("TaskId") or "").strip()
        created = (event.findtext("CreateTime") or "").strip()
        if not user or not task_id:
            return refuse(400, "Bad request", "FromUserName and TaskId are required")
        key = f"wecom:{user}:{task_id}:{created}"
        outcome = self._outcomes.settle(key, await sink.on_action(InboundAction(
            provider=self.provider, dedupe_key=key, provider_id=task_id,
            from_address=user, via="wecom", received_at=self._clock.now())))
        label = "已确认" if confirmed(outcome) else "已解除" if outcome == "already cancelled" else "未能确认"
        return self._reply(user, label)

    def _reply(self, user: str, label: str) -> web.Response:
        """Passive reply: replace the card's button with `label` (encrypted and signed)."""
        now = str(int(time.time()))
        inner = (f"<xml><ToUserName><![CDATA[{user}]]></ToUserName><FromUserName><![CDATA[{self.corp_id}]]>"
                 f"</FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[update_button]]></MsgType>"
                 f"<Button><ReplaceName><![CDATA[{escape(label)}]]></ReplaceName></Button></xml>")
        enc = self.crypto.encrypt(inner)
        nonce = secrets.token_hex(8)
        sig = self.crypto.signature(now, nonce, enc)
        return web.Response(text=f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt><MsgSignature><![CDATA[{sig}]]>"
                                 f"</MsgSignature><TimeStamp>{now}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>",
                            content_type="application/xml")

    async def close(self) -> None:
        await self._client.close()


class WeComRobot(ChannelBase):
    """Group robot (群机器人): markdown to a work group's webhook key. `to` is the robot key."""

    kind = "wecom_group"
    provider = "wecom_robot"
    lookup = "none"

    def __init__(self, *, api_base_url: str | None = None, timeout: float = 15.0, per_minute: int = 20):
        self._client = _Client(api_base_url, timeout)
        self.per_minute = per_minute
        self._sent: dict[str, deque[float]] = defaultdict(deque)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def _slot(self, key: str) -> None:
        async with self._locks[key]:
            sent = self._sent[key]
            while True:
                now = time.monotonic()
                while sent and now - sent[0] >= 60:
                    sent.popleft()
                if len(sent) < self.per_minute:
                    sent.append(now)
                    return
                await asyncio.sleep(60 - (now - sent[0]) + 0.05)

    @staticmethod
    def markdown(body: str) -> str:
        text, link = split_link(body)
        head = re.match(r"^((?:【[^】]*】)+)(.*)$", text, re.S)
        out = f'<font color="warning">{head.group(1)}</font>\n{head.group(2)}' if head else text
        return out + (f"\n[打开确认页]({link})" if link else "")

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        if not msg.to:
            raise PermanentSendError("wecom robot: no webhook key")
        await self._slot(msg.to)
        data = await self._client.call("POST", "/cgi-bin/webhook/send", {"key": msg.to},
                                       {"msgtype": "markdown", "markdown": {"content": self.markdown(msg.body)[:4000]}})
        if int(data.get("errcode", 0)) != 0:
            raise _error("webhook/send", data)
        return SendReceipt(provider=self.provider, provider_id=msg.idempotency_key)

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        return None

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        return []

    async def close(self) -> None:
        await self._client.close()


__all__ = ["CALLBACK_PATH", "WeComApp", "WeComRobot", "split_link", "task_id_for"]
