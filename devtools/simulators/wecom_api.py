"""A local stand-in for WeCom's (企业微信) server API, and for a member tapping a card.

Speaks what channels.wecom sends: GET /cgi-bin/gettoken (corpid + corpsecret → access_token
with expires_in), POST /cgi-bin/message/send?access_token=... (template_card; errcode 40014
for an unknown token, 42001 for an expired one, 81013 when every recipient is invalid,
invaliduser for some), POST /cgi-bin/webhook/send?key=... (group robot markdown; 93000 for an
unknown key). It plays the member too: `press_button` posts the `template_card_event` WeCom
would post to our callback URL, encrypted and signed with the application's Token and
EncodingAESKey; `verify_url` runs the URL-verification handshake.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientError, web
from defusedxml.ElementTree import fromstring

from channels.wecom_crypto import WeComCrypto
from devtools.simulators import SimMessage, SimulatorBase


@dataclass
class Callback:
    """One callback as sent, so a test can post it again (replay)."""

    url: str
    body: str
    status: int = 0
    answer: str = ""
    reply: str = ""  # decrypted passive reply (the updated button)
    extra: dict[str, Any] = field(default_factory=dict)


class WeComApi(SimulatorBase):
    def __init__(self, corp_id: str = "ww0123456789abcdef", corp_secret: str = "sim-corp-secret",
                 agent_id: int = 1000002, token: str = "simtoken", encoding_aes_key: str | None = None,
                 users: set[str] | None = None, robot_keys: set[str] | None = None, token_ttl: int = 7200):
        super().__init__()
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.token = token
        self.encoding_aes_key = encoding_aes_key or base64.b64encode(secrets.token_bytes(32)).decode()[:43]
        self.crypto = WeComCrypto(token, self.encoding_aes_key, corp_id)
        self.users = users  # None: any userid exists
        self.robot_keys = robot_keys if robot_keys is not None else set()
        self.token_ttl = token_ttl
        self.tokens: dict[str, float] = {}  # access_token -> expiry (monotonic)
        self.tokens_issued = 0
        self.robot_messages: list[SimMessage] = []
        self.callbacks: list[Callback] = []
        # Demo: members in `auto_press` tap 收到 `press_delay` seconds after a card arrives.
        self.callback_url: str | None = None
        self.auto_press: set[str] = set()
        self.press_delay = 0.3

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._send)
        app.router.add_post("/cgi-bin/webhook/send", self._robot)
        return app

    @staticmethod
    def _err(code: int, msg: str, **extra: Any) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": msg, **extra})

    def expire_tokens(self) -> None:
        """Every issued token expires now (the next API call gets 42001)."""
        for k in self.tokens:
            self.tokens[k] = 0.0

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.requests_seen += 1
        q = request.query
        if q.get("corpid") != self.corp_id:
            return self._err(40013, "invalid corpid")
        if q.get("corpsecret") != self.corp_secret:
            return self._err(40001, "invalid credential")
        tok = secrets.token_urlsafe(48)
        self.tokens[tok] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return self._err(0, "ok", access_token=tok, expires_in=self.token_ttl)

    def _check_token(self, request: web.Request) -> web.Response | None:
        tok = request.query.get("access_token", "")
        if tok not in self.tokens:
            return self._err(40014, "invalid access_token")
        if time.monotonic() >= self.tokens[tok]:
            return self._err(42001, "access_token expired")
        return None

    async def _send(self, request: web.Request) -> web.Response:
        self.requests_seen += 1
        if (refused := self._check_token(request)) is not None:
            return refused
        fault = self._take_fault()
        if fault is not None:
            return self._err(int(fault), "injected fault")
        try:
            body = await request.json()
        except ValueError:
            return self._err(47001, "data format error")
        if body.get("agentid") != self.agent_id:
            return self._err(301002, "not allow operate another agent with this accesstoken")
        if body.get("msgtype") != "template_card" or not isinstance(body.get("template_card"), dict):
            return self._err(40008, "invalid message type")
        card = body["template_card"]
        if card.get("card_type") != "button_interaction" or not card.get("task_id") or not card.get("button_list"):
            return self._err(40058, "template_card: card_type, task_id and button_list are required")
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        bad = [u for u in users if u in self.fail_numbers or (self.users is not None and u not in self.users)]
        good = [u for u in users if u not in bad]
        if not good:
            return self._err(81013, "user & party & tag all invalid", invaliduser="|".join(bad))
        msgs = [SimMessage(to=u, body=str(card.get("sub_title_text", "")), id="msg" + secrets.token_hex(8),
                           context=str(card["task_id"]), time=datetime.now(UTC), status="sent",
                           extra={"card": card}) for u in good]
        await self._record(msgs)
        for m in msgs:
            if m.to in self.auto_press and self.callback_url:
                self._spawn(self._press_later(m, self.callback_url))
        extra = {"invaliduser": "|".join(bad)} if bad else {}
        return self._err(0, "ok", msgid=msgs[0].id, response_code=secrets.token_hex(16), **extra)

    async def _robot(self, request: web.Request) -> web.Response:
        self.requests_seen += 1
        key = request.query.get("key", "")
        if key not in self.robot_keys:
            return self._err(93000, "invalid webhook url")
        body = await request.json()
        if body.get("msgtype") != "markdown":
            return self._err(40008, "invalid message type")
        async with self._cond:
            self.robot_messages.append(SimMessage(to=key, body=body["markdown"]["content"], id=secrets.token_hex(8),
                                                  context=None, time=datetime.now(UTC)))
            self._cond.notify_all()
        return self._err(0, "ok")

    # -- WeCom calling us ------------------------------------------------------------------

    def _signed_query(self, encrypted: str, timestamp: int | None = None) -> dict[str, str]:
        ts, nonce = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(5)
        return {"msg_signature": self.crypto.signature(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}

    async def verify_url(self, callback_url: str) -> tuple[int, str, str]:
        """URL verification: (status, answer, expected plaintext)."""
        plain = str(secrets.randbelow(10**19))
        echostr = self.crypto.encrypt(plain)
        q = self._signed_query(echostr)
        q["echostr"] = echostr
        async with self._http().get(callback_url + "?" + urlencode(q)) as r:
            return r.status, await r.text(), plain

    async def press_button(self, message: SimMessage, callback_url: str, *, key: str = "confirm",
                           user: str | None = None, timestamp: int | None = None) -> Callback:
        """The member taps a button of the card: post the encrypted template_card_event."""
        now = int(time.time())
        event = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                 f"<FromUserName><![CDATA[{user or message.to}]]></FromUserName><CreateTime>{now}</CreateTime>"
                 f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>"
                 f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{message.context}]]></TaskId>"
                 f"<CardType><![CDATA[button_interaction]]></CardType>"
                 f"<ResponseCode><![CDATA[{secrets.token_hex(16)}]]></ResponseCode>"
                 f"<AgentID>{self.agent_id}</AgentID></xml>")
        encrypted = self.crypto.encrypt(event)
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]>"
                f"</Encrypt><AgentID><![CDATA[{self.agent_id}]]></AgentID></xml>")
        cb = Callback(url=callback_url + "?" + urlencode(self._signed_query(encrypted, timestamp)), body=body)
        return await self.post_callback(cb)

    async def _press_later(self, message: SimMessage, url: str) -> None:
        await asyncio.sleep(self.press_delay)
        try:
            await self.press_button(message, url)
        except (ClientError, TimeoutError) as exc:
            message.extra["callback_error"] = repr(exc)

    async def post_callback(self, cb: Callback) -> Callback:
        """Post (or re-post: a replay) a callback; decrypts the passive reply if there is one."""
        async with self._http().post(cb.url, data=cb.body.encode(), headers={"Content-Type": "text/xml"}) as r:
            cb.status, cb.answer = r.status, await r.text()
        self.callbacks.append(cb)
        await self._changed()
        if cb.status == 200 and "<Encrypt>" in cb.answer:
            doc = fromstring(cb.answer)
            enc = doc.findtext("Encrypt") or ""
            ts, nonce, sig = doc.findtext("TimeStamp") or "", doc.findtext("Nonce") or "", doc.findtext("MsgSignature") or ""
            if self.crypto.verify(sig, ts, nonce, enc):
                cb.reply = self.crypto.decrypt(enc)
        return cb
