"""Hostile input through the real HTTP stack (issue 10, parts 3, 6, 7, 8): every answer is a
4xx application/problem+json that names the problem (or, for people, a page), nothing is
stored or changed, and nothing from outside causes a 500.

One stack serves everything: the API, Twilio SMS and voice webhooks (signed), Tencent's
callbacks (secret path), WeCom's callback (msg_signature) and the confirm pages.
"""

from __future__ import annotations

import bz2
import codecs
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import func, select

from channels.sms_tencent import REPLY_PATH as TENCENT_REPLY
from channels.sms_tencent import STATUS_PATH as TENCENT_STATUS
from channels.sms_tencent import TencentSms
from channels.sms_twilio import INBOUND_PATH, STATUS_PATH
from channels.voice_twilio import CONFIRMED, GATHER_PATH, NOT_CONFIRMED, TwilioVoice
from channels.voice_twilio import STATUS_PATH as VOICE_STATUS
from channels.wecom import CALLBACK_PATH, WeComApp
from devtools.simulators.twilio_api import TwilioApi
from devtools.simulators.wecom_api import WeComApi
from support.channel_stack import (
    AUTH,
    LINK_RE,
    Stack,
    build_stack,
    imminent,
    stop_stack,
    write_templates,
)
from warnd.api.middleware import BodyLimits, install
from warnd.db.models import Alert, Call, ConfirmLink, Event, Feedback, Inbound

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
CB_TOKEN = "hostile-callback-token-0123456789"
WARNING = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或“收到”确认。\""
WARNING_LINK = "warning = \"{tag}【{step}】{sender}发布{headline}，影响{area}。{instruction}请回复1或点击确认：{link}\""
PROBLEM = "application/problem+json"
KIB64 = 64 * 1024


@pytest.fixture
async def st(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    wecom = WeComApi()
    await wecom.start()

    def extra(base: str, twilio: TwilioApi) -> dict[str, Any]:
        return {
            "voice": TwilioVoice(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                 from_number="+15005550006", public_base_url=base, api_base_url=twilio.base_url),
            "wecom": WeComApp(corp_id=wecom.corp_id, corp_secret=wecom.corp_secret, agent_id=wecom.agent_id,
                              token=wecom.token, encoding_aes_key=wecom.encoding_aes_key, api_base_url=wecom.base_url),
            # Tencent's callbacks only (nothing is sent through it here).
            "tencent": TencentSms(secret_id="AKID", secret_key="k", sdk_app_id="1400000000", sign_name="s",
                                  template_id="1", callback_token=CB_TOKEN, endpoint="127.0.0.1:9"),
        }

    stack = await build_stack(db_url, tmp_path, channels=extra,
                              templates=write_templates(tmp_path, {WARNING: WARNING_LINK}))
    stack.extra["wecom"] = wecom
    try:
        yield stack
    finally:
        await stop_stack(stack)
        await wecom.stop()


async def count(st: Stack, model: type, **where: object) -> int:
    async with st.engine.db.session() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int((await s.exec(q)).one())


async def snapshot(st: Stack) -> tuple[int, ...]:
    """What hostile input must not change: alerts, calls and their states, inbound messages,
    events, feedback, used confirm links."""
    async with st.engine.db.session() as s:
        states = tuple(sorted((c.id or 0, c.state) for c in (await s.exec(select(Call))).all()))
    used = sum(1 for link in await rows(st, ConfirmLink) if link.used_at is not None)
    return (await count(st, Alert), hash(states), await count(st, Inbound), await count(st, Event),
            await count(st, Feedback), used)


async def rows(st: Stack, model: type) -> list[Any]:
    async with st.engine.db.session() as s:
        return list((await s.exec(select(model))).all())


async def problem(r: aiohttp.ClientResponse, status: int, *words: str) -> dict[str, Any]:
    text = await r.text()
    assert r.status == status, text
    assert r.content_type == PROBLEM, text
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status and body["title"] and body["detail"]
    for w in words:
        assert w in body["detail"], (w, body)
    assert "Traceback" not in text and "aiohttp" not in r.headers.get("Server", "")
    return body


# -- the small ones (part 7) ---------------------------------------------------------------

async def test_unknown_routes_methods_and_missing_tokens_answer_problem_json(st: Stack) -> None:
    r = await st.http.get("/no/such/thing")
    await problem(r, 404, "/no/such/thing")
    r = await st.http.delete("/healthz")
    await problem(r, 405, "DELETE")
    assert "GET" in r.headers["Allow"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer " + "é" * 10}):
        r = await st.http.get("/api/v1/alerts/1", headers=headers)
        await problem(r, 401, "bearer token")
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="warnd"'
    r = await st.http.get("/healthz")
    assert r.status == 200 and r.headers["Server"] == "warnd"


async def test_catch_all_answers_500_problem_json_without_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app = web.Application()
    app.router.add_get("/boom", boom)
    install(app, BodyLimits())
    async with TestClient(TestServer(app)) as http:
        r = await http.get("/boom")
        body = await problem(r, 500, "error_id")
        text = json.dumps(body)
    assert "secret internal detail" not in text and "RuntimeError" not in text
    logged = capsys.readouterr()
    assert body["error_id"] in logged.out + logged.err and "secret internal detail" in logged.out + logged.err


# -- the CAP API (parts 3 and 4) -------------------------------------------------------------

def with_encoding(name: str) -> bytes:
    return imminent("ENC-1").replace(b'encoding="UTF-8"', f'encoding="{name}"'.encode(), 1)


async def test_cap_api_refuses_odd_codecs_bombs_and_reports_every_error(st: Stack) -> None:
    before = await snapshot(st)
    assert b'encoding="UTF-8"' in imminent("ENC-1")
    for name in ("base64", "hex", "zlib", "bz2", "uu", "rot13", "unicode_escape", "utf-7"):
        r = await st.http.post("/api/v1/alerts", data=with_encoding(name), headers=AUTH)
        body = await problem(r, 400, f"encoding {name!r} is not a character encoding")
        assert body["field"] == "xml"
    for payload in (base64_of(imminent("B64")), zlib.compress(imminent("Z")), bz2.compress(imminent("B")),
                    codecs.encode(imminent("R").decode(), "rot13").encode()):
        await problem(await st.http.post("/api/v1/alerts", data=payload, headers=AUTH), 400)
    for name, why in (("billion_laughs.xml", "DTD"), ("xxe_file.xml", "DTD"), ("xxe_external_dtd.xml", "DTD")):
        r = await st.http.post("/api/v1/alerts", data=(DATA / name).read_bytes(), headers=AUTH)
        await problem(r, 400, why)
    bad_utf8 = imminent("U8").replace("暴雨".encode(), b"\xb1\xa9\xd3\xea", 1)  # GBK bytes, declared UTF-8
    await problem(await st.http.post("/api/v1/alerts", data=bad_utf8, headers=AUTH), 400, "not valid UTF-8")
    several = (imminent("SEV").replace(b"<status>Actual</status>", b"<status>Real</status>")
               .replace(b"<scope>Public</scope>", b"<scope>All</scope>")
               .replace(b"<urgency>Immediate</urgency>", b"<urgency>Now</urgency>"))
    body = await problem(await st.http.post("/api/v1/alerts", data=several, headers=AUTH), 400,
                         "'Real'", "alert.scope: 'All'", "info[0].urgency: 'Now'")
    assert body["field"] == "alert.status"
    deep = imminent("DEEP").replace(b"<sent>", b"<x>" * 100_000 + b"</x>" * 100_000 + b"<sent>", 1)
    deep = deep.replace(b"<status>Actual</status>", b"", 1)
    await problem(await st.http.post("/api/v1/alerts", data=deep, headers=AUTH), 400, "is required")
    big = imminent("BIG") + b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->"
    await problem(await st.http.post("/api/v1/alerts", data=big, headers=AUTH), 413, str(5 * 1024 * 1024))
    r = await st.http.post("/api/v1/alerts", data=zlib.compress(imminent("GZ")),
                           headers={**AUTH, "Content-Encoding": "deflate"})
    await problem(r, 415, "compressed")
    assert await snapshot(st) == before


def base64_of(data: bytes) -> bytes:
    return codecs.encode(data, "base64")


async def test_json_api_bodies_that_are_not_json(st: Stack) -> None:
    alert = await st.post_cap(imminent())
    calls = await st.calls(alert["id"])
    call_id = calls["张书记"]["id"]
    before = await snapshot(st)
    url = f"/api/v1/calls/{call_id}/ack"
    for data, ctype in ((b'{"note": "\xff\xfe"}', "application/json"), (b"[" * 50_000, "application/json"),
                        (b'{"note": "x"}', "application/json; charset=x-no-such-charset"),
                        (b"not json", "application/json"), (b"[\"note\"]", "application/json")):
        r = await st.http.post(url, data=data, headers={**st.officer, "Content-Type": ctype})
        assert r.status == 400 and r.content_type == PROBLEM, (data[:20], await r.text())
    await problem(await st.http.post(url, data=b"x" * (KIB64 + 1), headers=st.officer), 413, "65536")
    await problem(await st.http.post("/api/v1/calls/abc/ack", json={"note": "x"}, headers=st.officer), 404)
    assert await snapshot(st) == before


# -- webhook bodies are bounded before any signature check (part 2) ------------------------

WEBHOOKS = [STATUS_PATH, INBOUND_PATH, GATHER_PATH, VOICE_STATUS, CALLBACK_PATH,
            TENCENT_REPLY.format(token=CB_TOKEN), TENCENT_STATUS.format(token=CB_TOKEN)]


@pytest.mark.parametrize("path", WEBHOOKS)
async def test_oversized_webhook_bodies_are_refused_unread(st: Stack, path: str) -> None:
    before = await snapshot(st)
    await problem(await st.http.post(path, data=b"a" * (KIB64 + 1)), 413, "65536")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: stopped at the limit
        for _ in range(100):
            yield b"b" * 65536

    await problem(await st.http.post(path, data=chunks()), 413)
    await problem(await st.http.post(path, data=b"x=1", headers={"Content-Encoding": "gzip"}), 415)
    form = aiohttp.FormData()
    form.add_field("f", b"x", filename="x.bin")
    await problem(await st.http.post(path, data=form), 415, "multipart")
    assert await snapshot(st) == before


# -- Twilio: forms, signatures, replays (parts 3 and 8) ---------------------------------------

@pytest.mark.parametrize("path", [STATUS_PATH, INBOUND_PATH, GATHER_PATH, VOICE_STATUS])
async def test_twilio_webhooks_refuse_malformed_forms(st: Stack, path: str) -> None:
    before = await snapshot(st)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    signed = {**form, "X-Twilio-Signature": "c2lnbmF0dXJl"}
    await problem(await st.http.post(path, data=b"Body=\xff\xfe&From=%2B86", headers=signed), 400, "UTF-8")
    await problem(await st.http.post(path, data=b"Body=%ff%fe", headers=signed), 400, "UTF-8")
    await problem(await st.http.post(path, data=b"&".join(b"a%d=1" % i for i in range(300)), headers=signed),
                  400, "form fields")
    await problem(await st.http.post(path, data=b"{}", headers={**signed, "Content-Type": "application/json"}), 415)
    await problem(await st.http.post(path, data=b"Body=1",
                                     headers={**signed, "Content-Type": "application/x-www-form-urlencoded; charset=gbk"}),
                  415, "UTF-8")
    await problem(await st.http.post(path, data=b"Body=\xff", headers=form), 403, "X-Twilio-Signature")
    await problem(await st.http.post(path, data={"Body": "1"}, headers={"X-Twilio-Signature": "forged"}), 403)
    assert await snapshot(st) == before


async def test_twilio_replies_forged_replayed_or_signed_for_another_url(st: Stack) -> None:
    alert = await st.post_cap(imminent())
    await st.twilio.wait_for_messages(4, timeout=30)
    params = {"MessageSid": "SM" + "1" * 32, "From": "+8613900000001", "To": "+15005550006", "Body": "1"}
    sig = st.twilio.sign(st.base + INBOUND_PATH, params)
    other = st.twilio.sign(st.base + STATUS_PATH, params)
    before = await snapshot(st)
    await problem(await st.http.post(INBOUND_PATH, data=params, headers={"X-Twilio-Signature": other}), 403)
    forged = {**params, "From": "+8613900000002"}  # a signed request with one field changed
    await problem(await st.http.post(INBOUND_PATH, data=forged, headers={"X-Twilio-Signature": sig}), 403)
    assert await snapshot(st) == before
    r = await st.http.post(INBOUND_PATH, data=params, headers={"X-Twilio-Signature": sig})
    assert r.status == 200
    assert (await st.calls(alert["id"]))["张书记"]["state"] == "confirmed"
    after = await snapshot(st)
    r = await st.http.post(INBOUND_PATH, data=params, headers={"X-Twilio-Signature": sig})  # replayed
    assert r.status == 200 and await snapshot(st) == after
    assert await count(st, Inbound) == 1 and await count(st, Event, kind="call_confirmed") == 1


# -- Tencent: the secret path, bodies, replays ---------------------------------------------------

async def test_tencent_callbacks_forged_malformed_and_replayed(st: Stack) -> None:
    alert = await st.post_cap(imminent())
    await st.twilio.wait_for_messages(4, timeout=30)
    reply = TENCENT_REPLY.format(token=CB_TOKEN)
    good = {"mobile": "13900000001", "nationcode": "86", "text": "收到", "time": 1751335200}
    before = await snapshot(st)
    for token in ("wrong-token-0123456789", CB_TOKEN[:-1], CB_TOKEN + "x", "%00" * 8):
        r = await st.http.post(TENCENT_REPLY.format(token=token), json=good)
        assert r.status in (403, 404) and r.content_type == PROBLEM
    await problem(await st.http.post(reply, data=b'{"mobile": "\xff"}'), 400, "UTF-8")
    await problem(await st.http.post(reply, data=b'{"mobile": "13900000001", "text": "\\ud800", "time": 1}'),
                  400, "surrogate")
    await problem(await st.http.post(reply, data=b"[" * 60_000), 400, "nested")
    await problem(await st.http.post(reply, data=b"nope"), 400, "not JSON")
    await problem(await st.http.post(reply, json={**good, "mobile": "１３９"}), 400)  # full-width digits
    await problem(await st.http.post(reply, json={**good, "mobile": "1" * 200}), 400)
    status = TENCENT_STATUS.format(token=CB_TOKEN)
    await problem(await st.http.post(status, json=[{"sid": "x" * 500, "report_status": "SUCCESS"}]), 400)
    await problem(await st.http.post(status, json=[{"sid": "1", "report_status": "MAYBE"}]), 400)
    assert await snapshot(st) == before
    assert (await st.http.post(reply, json=good)).status == 200
    assert (await st.calls(alert["id"]))["张书记"]["state"] == "confirmed"
    after = await snapshot(st)
    assert (await st.http.post(reply, json=good)).status == 200  # Tencent re-delivers: nothing changes
    assert await snapshot(st) == after


# -- WeCom: XML and the signature ------------------------------------------------------------------

async def test_wecom_callback_refuses_dtds_odd_encodings_and_bad_signatures(st: Stack) -> None:
    before = await snapshot(st)
    q = "?msg_signature=abc&timestamp=1&nonce=2"
    for body, why in (
        (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>', "DTD"),
        (b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><Encrypt>a</Encrypt></xml>', "DTD"),
        (b'<?xml version="1.0" encoding="base64"?><xml><Encrypt>a</Encrypt></xml>', ""),
        (b'<?xml version="1.0" encoding="utf-16"?><xml><Encrypt>a</Encrypt></xml>', ""),
        (b"<xml><Encrypt>\xff\xfe</Encrypt></xml>", "UTF-8"),
        (b"<xml><Encrypt>a</Encrypt>", "not well-formed"),
        (b"", "not well-formed"),
    ):
        r = await st.http.post(CALLBACK_PATH + q, data=body)
        assert r.status in (400, 403), (body, await r.text())
        if r.status == 400:
            await problem(r, 400, why)
    sim: WeComApi = st.extra["wecom"]
    enc = sim.crypto.encrypt("<xml/>")
    for sig in ("é" * 40, "0" * 40, ""):
        r = await st.http.post(CALLBACK_PATH + f"?msg_signature={sig}&timestamp=1&nonce=n",
                               data=f"<xml><Encrypt>{enc}</Encrypt></xml>".encode())
        await problem(r, 403)
    r = await st.http.get(CALLBACK_PATH + "?msg_signature=%FF%FE&timestamp=x&nonce=%00&echostr=%ED%A0%80")
    await problem(r, 403)
    assert await snapshot(st) == before


# -- voice tells the truth (part 6) -------------------------------------------------------------

async def test_key_press_on_an_unknown_call_is_not_confirmed_and_says_so(st: Stack) -> None:
    alert = await st.post_cap(imminent())
    await st.twilio.wait_for_messages(4, timeout=30)
    url = st.base + GATHER_PATH + "?attempt=1"
    for sid, to in (("CA" + "0" * 32, "+8613900000001"), ("CA" + "9" * 32, "+8613900000002")):
        params = {"CallSid": sid, "Digits": "1", "To": to, "From": "+15005550006"}
        r = await st.http.post(GATHER_PATH + "?attempt=1", data=params,
                               headers={"X-Twilio-Signature": st.twilio.sign(url, params)})
        said = await r.text()
        assert r.status == 200 and NOT_CONFIRMED in said and CONFIRMED not in said
    calls = await st.calls(alert["id"])
    assert all(c["state"] == "open" for c in calls.values())
    rejected = [e.data for e in await rows(st, Event) if e.kind == "action_rejected"]
    assert [d["outcome"] for d in rejected] == ["unknown delivery", "unknown delivery"]
    assert {d["provider_id"] for d in rejected} == {"CA" + "0" * 32, "CA" + "9" * 32}


# -- confirm pages (parts 3, 7, 8) ------------------------------------------------------------

async def test_confirm_pages_refuse_bad_tokens_and_forms_and_keep_what_was_typed(st: Stack) -> None:
    alert = await st.post_cap(imminent())
    links = {m.to: LINK_RE.search(m.body).group(1)  # type: ignore[union-attr]
             for m in await st.twilio.wait_for_messages(4, timeout=30)}
    token = links["+8613900000001"]
    before = await snapshot(st)
    for guess in ("%00" * 11, "..%2F..%2Fetc%2Fpasswd", "é" * 32, token[:-1], token + "A", token.lower(),
                  "%FF" * 32):
        r = await st.http.post(f"/c/{guess}")
        assert r.status == 404 and "链接无效" in await r.text()
    assert await snapshot(st) == before

    page = await (await st.http.post(f"/c/{token}", data={"ok": "1"})).text()
    ftoken = page.split('action="../f/', 1)[1].split('"', 1)[0]
    assert (await st.calls(alert["id"]))["张书记"]["state"] == "confirmed"
    before = await snapshot(st)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await st.http.post(f"/f/{ftoken}", data="note=转移".encode("gbk") + b"&people_moved=3", headers=form)
    assert r.status == 400 and "UTF-8" in await r.text()
    note = "已组织<b>三户</b>转移，另有一户老人不愿离开，正在劝导。"
    r = await st.http.post(f"/f/{ftoken}", data=[("action", "transferred"), ("action", "door_knock"),
                                                  ("people_moved", "-1"), ("note", note)])
    text = await r.text()
    assert r.status == 400 and "整数" in text
    assert "已组织&lt;b&gt;三户&lt;/b&gt;转移，另有一户老人不愿离开，正在劝导。</textarea>" in text
    assert 'value="transferred" checked' in text and 'value="door_knock" checked' in text
    assert 'value="gong" checked' not in text and 'value="-1"' in text
    assert await snapshot(st) == before  # nothing stored and the token still works
    r = await st.http.post(f"/f/{ftoken}", data=[("action", "transferred"), ("people_moved", "3"), ("note", note)])
    assert r.status == 200 and await count(st, Feedback) == 1
