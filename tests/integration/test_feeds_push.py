"""CAP push per source: its own token or HMAC, sender allow-list, mapping; rejections are
problem+json, logged as events, and nothing is stored or sent."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import pytest

from support.feeds_support import CMA, T0, V1, Stack, cap, stack
from warnd.db.models import Alert, Delivery

PUSH_TOKEN = "push-token-0123456789abcdef"
SECRET = "hmac-secret-0123456789abcdef"
SOURCES = f"""
[sources.qxt]
kind = "cap_push"
senders = ["{CMA}"]
token = "{PUSH_TOKEN}"
secret = "{SECRET}"

[sources.shanhong]
kind = "cap_push"
senders = ["shanhong@431222.gov.cn"]
token = "{PUSH_TOKEN}-sh"
[sources.shanhong.mapping]
hazard = "flash_flood"
step = "imminent"

[sources.off]
kind = "cap_push"
senders = ["{CMA}"]
token = "{PUSH_TOKEN}"
enabled = false
"""


async def push(st: Stack, source: str, body: bytes, token: str | None = PUSH_TOKEN,
               sig: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/cap+xml"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if sig:
        headers["X-Warnd-Signature"] = sig
    r = await st.http.post(f"/api/v1/feeds/{source}/cap", data=body, headers=headers)
    return r.status, await r.json(content_type=None)


@pytest.fixture
async def st(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with stack(db_url, tmp_path, sources=SOURCES) as s:
        yield s


async def test_trusted_push_is_disseminated_once(st: Stack) -> None:
    status, body = await push(st, "qxt", cap("QXT-1", onset=T0 + timedelta(hours=4)))
    assert status == 201 and body["calls"] > 0 and body["step"] == "warning"
    status, again = await push(st, "qxt", cap("QXT-1", onset=T0 + timedelta(hours=4)))
    assert status == 200 and again["created"] is False and again["id"] == body["id"]
    alerts = await st.alerts()
    assert [a.source for a in alerts] == ["feed:qxt"]
    # The duty-room API token is not a feed token, and the feed token is not an API token.
    r = await st.http.post("/api/v1/feeds/qxt/cap", data=cap("QXT-2"), headers=st.auth)
    assert r.status == 401
    r = await st.http.get("/api/v1/alerts/1", headers={"Authorization": f"Bearer {PUSH_TOKEN}"})
    assert r.status == 401


async def test_hmac_signature_is_accepted(st: Stack) -> None:
    body = cap("QXT-3")
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, _ = await push(st, "qxt", body, token=None, sig=sig)
    assert status == 201
    status, problem = await push(st, "qxt", cap("QXT-4"), token=None, sig=sig)  # signature of another body
    assert status == 401 and problem["title"] == "Unauthorized"


async def test_untrusted_sender_is_refused_logged_and_never_sent(st: Stack) -> None:
    forged = cap("FAKE-1", sender="someone@example.com", event="暴雨红色预警", geocodes=(V1,))
    status, problem = await push(st, "qxt", forged)
    assert status == 403 and problem["title"] == "Untrusted sender" and problem["field"] == "alert.sender"
    assert "someone@example.com" in problem["detail"]
    # A genuine sender on the wrong source is refused too.
    status, _ = await push(st, "shanhong", cap("QXT-9"), token=f"{PUSH_TOKEN}-sh")
    assert status == 403
    # Unknown and disabled sources, bad token: refused with the same answer (no enumeration).
    unknown, disabled = await push(st, "nosuch", cap("QXT-9")), await push(st, "off", cap("QXT-9"))
    bad_token = await push(st, "qxt", cap("QXT-9"), token="wrong-token-0123456789")
    assert unknown == disabled == bad_token and bad_token[0] == 401
    assert await st.count(Alert) == 0 and await st.count(Delivery) == 0
    reasons = [e.data["reason"] for e in await st.events("feed_rejected")]
    assert reasons == ["untrusted sender", "untrusted sender", "no such push source", "no such push source",
                       "bad credentials"]
    assert (await st.events("feed_rejected"))[0].data["sender"] == "someone@example.com"
    health = {f["name"]: f for f in (await (await st.http.get("/api/v1/feeds", headers=st.auth)).json())["feeds"]}
    assert health["qxt"]["last_error"] == "push with bad credentials"
    assert "untrusted sender" in health["shanhong"]["last_error"]


async def test_source_mapping_forces_hazard_and_step(st: Stack) -> None:
    body = cap("SH-1", sender="shanhong@431222.gov.cn", event="监测预警", headline="辰龙关村雨量超标",
               event_codes=(), onset=T0 + timedelta(hours=5))
    status, resp = await push(st, "shanhong", body, token=f"{PUSH_TOKEN}-sh")
    assert status == 201 and resp["step"] == "imminent"
    (alert,) = await st.alerts()
    assert alert.hazard == "flash_flood" and alert.source == "feed:shanhong"


async def test_expired_message_is_not_disseminated(st: Stack) -> None:
    old = cap("OLD-1", sent=T0 - timedelta(days=2), expires=T0 - timedelta(days=1))
    status, problem = await push(st, "qxt", old)
    assert status == 422 and problem["field"] == "info.expires"
    assert await st.count(Alert) == 0


async def test_lifting_update_cancels_the_referenced_warning(st: Stack) -> None:
    _, first = await push(st, "qxt", cap("QXT-L", onset=T0 + timedelta(minutes=30)))
    await st.clock.advance(timedelta(minutes=40))  # the lifting message is sent 40 minutes later
    lift = cap("QXT-L2", sent=T0 + timedelta(minutes=40), msg_type="Update", event="暴雨黄色预警解除",
               headline="沅陵县气象台解除暴雨黄色预警信号", references=[("QXT-L", T0)])
    status, body = await push(st, "qxt", lift)
    assert status == 201 and body["cancelled_calls"] == first["calls"]
    alerts = {a.identifier: a for a in await st.alerts()}
    assert alerts["QXT-L"].state == "cancelled" and alerts["QXT-L2"].msg_type == "Cancel"
    # 解除 with no references cannot be matched: refused, nothing sent.
    status, problem = await push(st, "qxt", cap("QXT-L3", event="暴雨黄色预警解除"))
    assert status == 422 and problem["field"] == "alert.references"
