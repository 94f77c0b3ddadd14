"""The mobile confirm page: /c/{token} (收到) and /f/{token} (反馈).

Server-rendered HTML, zh-CN, no login, no JavaScript, small inline CSS: it must work in
WeChat's in-app browser and on an old Android phone on a weak network. GET never changes
anything (link scanners and chat previews fetch URLs); only the button's POST confirms.
A guessed, expired or reused token gets a clear page and changes nothing.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from aiohttp import web
from sqlalchemy import update
from sqlmodel import col, select

from channels.webhook_io import FormError, parse_form
from warnd.clock import Clock
from warnd.confirm.links import CONFIRM, FEEDBACK, LinkIssuer, plausible, token_hash
from warnd.core.domain import AlertState, CallState, ConfirmVia
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, ConfirmLink, Feedback, Person, Region
from warnd.engine import events
from warnd.engine.calls import Calls

log = structlog.get_logger("warnd.confirm")

ACTIONS = {"transferred": "已转移", "gong": "已鸣锣吹哨", "door_knock": "已敲门入户", "other": "其他"}
MAX_PEOPLE = 100_000
MAX_NOTE = 500

_CSS = """
*{box-sizing:border-box}body{margin:0;font:17px/1.6 -apple-system,"PingFang SC","Microsoft YaHei",
sans-serif;background:#f4f4f4;color:#222}main{max-width:480px;margin:0 auto;padding:16px}
.card{background:#fff;border-radius:10px;padding:16px;margin-bottom:14px;box-shadow:0 1px 3px #0002}
h1{font-size:21px;margin:0 0 8px}.tag{display:inline-block;padding:1px 8px;border-radius:4px;
color:#fff;background:#c62828;font-size:14px}.tag.blue{background:#1565c0}.tag.yellow{background:#f9a825;
color:#222}.tag.orange{background:#ef6c00}.meta{color:#666;font-size:14px}
button{width:100%;min-height:56px;font-size:22px;border:0;border-radius:10px;background:#2e7d32;
color:#fff;margin-top:8px}button.secondary{background:#1565c0;font-size:19px}
label{display:block;margin:10px 0}input[type=number],textarea{width:100%;font-size:18px;padding:8px;
border:1px solid #bbb;border-radius:6px}input[type=checkbox]{width:22px;height:22px;vertical-align:middle}
fieldset{border:0;padding:0;margin:0}legend{font-weight:bold}.ok{color:#2e7d32;font-size:22px}
.err{color:#c62828}
"""

_COLOURS = {"red": ("红色", "red"), "orange": ("橙色", "orange"), "yellow": ("黄色", "yellow"),
            "blue": ("蓝色", "blue")}
_STEPS = {"forecast": "预报", "warning": "预警", "imminent": "临灾预警"}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width,initial-scale=1">'
           f'<meta name="robots" content="noindex"><title>{html.escape(title)}</title>'
           f'<style>{_CSS}</style></head><body><main>{body}</main></body></html>')
    return web.Response(text=doc, status=status, content_type="text/html", charset="utf-8", headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
        "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
    })


def _notice(title: str, text: str, status: int) -> web.Response:
    return _page(title, f'<div class="card"><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>'
                        f'<p class="meta">如有疑问请联系县应急管理局值班室。</p></div>', status)


INVALID = ("链接无效", "此链接无效或不完整。请打开短信或企业微信中收到的完整链接，或直接回复短信“1”确认。", 404)
EXPIRED = ("链接已失效", "该预警已结束、已解除或链接已过期，无需再操作。", 410)
USED_CONFIRM = ("已确认", "此链接已经确认过收到，无需重复操作。", 409)
USED_FEEDBACK = ("反馈已提交", "此反馈已经提交，无需重复提交。如需补充，请联系值班室。", 409)


@dataclass
class Loaded:
    link: ConfirmLink
    call: Call
    alert: Alert


class ConfirmPages:
    def __init__(self, db: Database, clock: Clock, calls: Calls, links: LinkIssuer,
                 kick: Callable[[], None] = lambda: None):
        self.db, self.clock, self.calls, self.links, self.kick = db, clock, calls, links, kick

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/c/{token}", self.get_confirm), web.post("/c/{token}", self.post_confirm),
            web.get("/f/{token}", self.get_feedback), web.post("/f/{token}", self.post_feedback),
        ]

    async def _load(self, token: str, purpose: str, now: datetime) -> Loaded | web.Response:
        if not plausible(token):
            return _notice(*INVALID)
        async with self.db.session() as s:
            link = (await s.exec(select(ConfirmLink).where(ConfirmLink.token_hash == token_hash(token)))).first()
            if link is None or link.purpose != purpose:
                return _notice(*INVALID)
            call = await s.get(Call, link.call_id)
            alert = await s.get(Alert, link.alert_id)
        if call is None or alert is None:
            return _notice(*INVALID)
        if link.used_at is not None:
            return _notice(*(USED_CONFIRM if purpose == CONFIRM else USED_FEEDBACK))
        if (now >= link.expires_at or call.state == CallState.CANCELLED
                or alert.state in (AlertState.CANCELLED, AlertState.EXPIRED)):
            return _notice(*EXPIRED)
        return Loaded(link, call, alert)

    async def _header(self, x: Loaded) -> str:
        async with self.db.session() as s:
            official = await s.get(Person, x.call.person_id)
            recipient = await s.get(Person, x.link.person_id)
            region = await s.get(Region, x.call.region_code)
        a = x.alert
        colour, css = _COLOURS.get(a.colour, (a.colour, "red"))
        drill = {"Exercise": "【演练】", "Test": "【测试】"}.get(a.status, "")
        who = official.name if official else ""
        place = region.name if region else x.call.region_code
        for_whom = (f"<p>致：{html.escape(recipient.name)}（代{html.escape(who)}确认）</p>"
                    if recipient and official and recipient.id != official.id
                    else f"<p>致：{html.escape(who)}</p>")
        return (f'<div class="card"><p><span class="tag {css}">{html.escape(colour)}'
                f'{html.escape(_STEPS.get(a.step, a.step))}</span> {html.escape(drill)}</p>'
                f'<h1>{html.escape(a.headline)}</h1><p class="meta">{html.escape(a.sender_name)} · '
                f'{html.escape(place)}</p>{"<p>" + html.escape(a.instruction) + "</p>" if a.instruction else ""}'
                f'{for_whom}</div>')

    async def get_confirm(self, request: web.Request) -> web.StreamResponse:
        x = await self._load(request.match_info["token"], CONFIRM, self.clock.now())
        if isinstance(x, web.Response):
            return x
        done = x.call.state == CallState.CONFIRMED
        return _page("预警叫应确认", await self._header(x) + (
            '<div class="card"><form method="post">'
            + ('<p class="meta">此叫应已由其他方式确认，仍可点击并填写反馈。</p>' if done else
               '<p>请点击下方按钮确认您已收到本预警。</p>')
            + '<button type="submit" name="ok" value="1">收到</button></form></div>'))

    async def post_confirm(self, request: web.Request) -> web.StreamResponse:
        now = self.clock.now()
        x = await self._load(request.match_info["token"], CONFIRM, now)
        if isinstance(x, web.Response):
            return x
        assert x.call.id is not None and x.alert.id is not None
        out = await self.calls.confirm(x.call.id, ConfirmVia.LINK, x.link.person_id)
        async with self.db.session() as s, s.begin():
            res = await s.exec(update(ConfirmLink).where(
                col(ConfirmLink.id) == x.link.id, col(ConfirmLink.used_at).is_(None)).values(used_at=now))
            if res.rowcount != 1:  # a concurrent tap won
                return _notice(*USED_CONFIRM)
            ftoken, row = self.links.row(call_id=x.call.id, alert_id=x.alert.id, person_id=x.link.person_id,
                                         expires_at=x.link.expires_at, now=now, purpose=FEEDBACK)
            await self.links.insert_rows(s, [row])
            events.record(s, now, "link_confirmed", alert_id=x.alert.id, call_id=x.call.id,
                          person_id=x.link.person_id, changed=out.confirmed)
        self.kick()  # the feedback link and any moot escalation messages
        return _page("已确认收到", await self._header(x) + '<div class="card"><p class="ok">✓ 已确认收到</p>'
                     '<p class="meta">请按预案立即落实。完成后请填写反馈（可选）：</p></div>'
                     + _feedback_form(f"../f/{ftoken}"))

    async def get_feedback(self, request: web.Request) -> web.StreamResponse:
        x = await self._load(request.match_info["token"], FEEDBACK, self.clock.now())
        if isinstance(x, web.Response):
            return x
        return _page("反馈", await self._header(x) + _feedback_form(None))

    async def post_feedback(self, request: web.Request) -> web.StreamResponse:
        now = self.clock.now()
        x = await self._load(request.match_info["token"], FEEDBACK, now)
        if isinstance(x, web.Response):
            return x
        try:
            form = parse_form(await request.read(), request.content_type, request.charset)
        except FormError as e:
            log.info("feedback form refused", reason=e.detail)
            return _page("反馈", await self._header(x) + '<div class="card"><p class="err">'
                         '提交的内容无法识别（须为 UTF-8 编码的表单）。请重新填写后提交。</p></div>'
                         + _feedback_form(None), status=e.status)
        actions = form.getall("action", [])
        raw_people = form.get("people_moved", "").strip() or "0"
        note = form.get("note", "").strip()
        error = ""
        if any(a not in ACTIONS for a in actions) or len(set(actions)) != len(actions):
            error = "请选择列出的措施。"
        elif not raw_people.isdigit() or int(raw_people) > MAX_PEOPLE:
            error = f"转移人数请填写 0 到 {MAX_PEOPLE} 之间的整数。"
        elif len(note) > MAX_NOTE:
            error = f"情况说明最多 {MAX_NOTE} 字。"
        elif not actions and raw_people == "0" and not note:
            error = "请至少选择一项措施、填写人数或说明。"
        if error:
            # Shown again with what was typed, so a long note is not lost to one wrong field.
            return _page("反馈", await self._header(x) + f'<div class="card"><p class="err">{html.escape(error)}</p></div>'
                         + _feedback_form(None, actions, raw_people, note), status=400)
        people = int(raw_people)
        async with self.db.session() as s, s.begin():
            res = await s.exec(update(ConfirmLink).where(
                col(ConfirmLink.id) == x.link.id, col(ConfirmLink.used_at).is_(None)).values(used_at=now))
            if res.rowcount != 1:
                return _notice(*USED_FEEDBACK)
            s.add(Feedback(call_id=x.call.id or 0, alert_id=x.alert.id or 0, person_id=x.link.person_id,
                           region_code=x.call.region_code, actions=actions, people_moved=people,
                           note=note, via="link", created_at=now))
            events.record(s, now, "feedback_received", alert_id=x.alert.id, call_id=x.call.id,
                          person_id=x.link.person_id, actions=actions, people_moved=people)
        labels = "、".join(ACTIONS[a] for a in actions) or "—"
        return _page("反馈已提交", '<div class="card"><p class="ok">✓ 反馈已提交</p>'
                     f'<p>措施：{html.escape(labels)}</p><p>转移人数：{people}</p>'
                     '<p class="meta">谢谢。值班室已收到您的反馈。</p></div>')


def _feedback_form(action: str | None, chosen: Sequence[str] = (), people: str = "0", note: str = "") -> str:
    """`action` relative to /c/{token} (works under a proxy path prefix); None: this URL.
    `chosen`, `people` and `note`: what was typed, when the form is shown again."""
    boxes = "".join(f'<label><input type="checkbox" name="action" value="{k}"'
                    f'{" checked" if k in chosen else ""}> {v}</label>' for k, v in ACTIONS.items())
    target = f' action="{html.escape(action)}"' if action else ""
    return (f'<div class="card"><form method="post"{target}><fieldset>'
            f'<legend>反馈：采取的措施（可多选）</legend>{boxes}</fieldset>'
            f'<label>转移人数<input type="number" name="people_moved" min="0" max="{MAX_PEOPLE}" '
            f'inputmode="numeric" value="{html.escape(people[:12])}"></label>'
            f'<label>情况说明<textarea name="note" rows="3" maxlength="{MAX_NOTE}">{html.escape(note)}</textarea></label>'
            f'<button type="submit" class="secondary">提交反馈</button></form></div>')
