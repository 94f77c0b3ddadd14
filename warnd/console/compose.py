"""The console's 发布预警 and 待审核 pages (the two-person rule).

- `GET /console/compose` — the form: hazard, colour, 631 step, validity, the area tree
  (townships → villages, search, select-all per township), the joint texts.
- `POST /console/compose` — `action` = `template` (fill the texts from compose.toml),
  `preview` (what each channel sends and whom it reaches) or `publish`. A red or imminent
  warning is held for approval (engine/approvals.py); anything else goes straight through the
  ingest, as a CAP 1.2 document from the console's sender, under the user's name.
- `GET /console/approvals`, `GET /console/approvals/{id}` — what waits, and one request.
- `POST /console/approvals/{id}/approve|reject` — an approver other than the author decides.
- `POST /console/alerts/{id}/cancel` — ask to lift a warning (waits for approval).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from warnd.api.auth import Rule, principal
from warnd.app import App
from warnd.auth.permissions import allowed
from warnd.console.render import beijing, render
from warnd.core.compose import DraftErrors, choose_area, fill_texts, read_draft
from warnd.core.domain import Colour, Step
from warnd.engine.approvals import ApprovalError, Person
from warnd.engine.ingest import IngestError
from warnd.views import approvals as approval_views
from warnd.views.board import alert_summary
from warnd.views.compose import CHANNEL_ZH, ComposeContext, area_tree, document, preview

MAX_FIELD = 2000
COLOURS = [(c.value, c.zh) for c in Colour]
STEPS = [(Step.FORECAST.value, "预报（6小时）"), (Step.WARNING.value, "预警（3小时）"),
         (Step.IMMINENT.value, "临灾预警（1小时）")]
TEXT_FIELDS = ("hazard", "colour", "step", "hours", "drill", "headline", "description", "instruction")


def _person(request: web.Request) -> Person:
    p = principal(request)
    return Person(p.name, p.display_name)


def _form_values(form: MultiDictProxy[Any]) -> tuple[dict[str, str], list[str]]:
    values = {k: str(form.get(k, ""))[:MAX_FIELD] for k in TEXT_FIELDS}
    picked = [str(v)[:20] for v in form.getall("area", [])][:5000]
    return values, picked


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None


def routes(app: App) -> list[tuple[web.RouteDef, Rule]]:
    ctx = ComposeContext(app.db, app.settings, app.policy, app.templates, app.roles, app.vocab, app.roster)
    hazards = [(h.code, h.zh) for h in app.vocab.hazards]

    async def page(request: web.Request, values: dict[str, str], picked: list[str], *, status: int = 200,
                   errors: dict[str, str] | None = None, error: str = "", shown: Any = None,
                   published: dict[str, Any] | None = None) -> web.Response:
        return render(request, "compose.html", status=status, title="发布预警", hazards=hazards, colours=COLOURS,
                      steps=STEPS, tree=await area_tree(ctx), values=values, picked=set(picked),
                      errors=errors or {}, error=error, preview=shown, published=published,
                      channel_zh=CHANNEL_ZH)

    async def compose_page(request: web.Request) -> web.StreamResponse:
        values = {"hazard": "rainstorm", "colour": "", "step": "", "hours": f"{app.settings.console.default_hours:g}",
                  "drill": "", "headline": "", "description": "", "instruction": ""}
        published = None
        if request.query.get("published", "").isdigit():
            published = await alert_summary(app.db, int(request.query["published"]), app.clock.now())
        return await page(request, values, [], published=published)

    async def compose_submit(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values, picked = _form_values(form)
        action = str(form.get("action", "preview"))
        now = app.clock.now()
        roster = await app.roster.get()
        if action == "template":
            colour = Colour(values["colour"]) if values["colour"] in set(Colour) else None
            if values["hazard"] not in app.vocab.codes or colour is None:
                return await page(request, values, picked, status=400,
                                  errors={"colour": "请先选择灾种和预警颜色，再套用模板。"})
            try:
                hours = float(values["hours"])
            except ValueError:
                hours = app.settings.console.default_hours
            area = choose_area(picked, roster.regions)
            texts = fill_texts(app.compose_texts, hazard=values["hazard"], hazard_zh=app.vocab.label(values["hazard"]),
                               colour=colour, step_label=app.templates.step_label(
                                   Step(values["step"]) if values["step"] in set(Step) else Step.WARNING),
                               sender=app.settings.county.sender_name, area=area.description or "相关地区",
                               hours=hours)
            values.update(headline=texts.headline, description=texts.description, instruction=texts.instruction)
            return await page(request, values, picked)
        try:
            draft = read_draft(values, picked, roster.regions, app.vocab.codes)
        except DraftErrors as e:
            return await page(request, values, picked, status=400, errors=e.errors,
                              error="请修改标红的项目后再" + ("发布。" if action == "publish" else "预览。"))
        shown = await preview(ctx, draft, now)
        if action != "publish":
            return await page(request, values, picked, shown=shown)
        me = _person(request)
        xml = document(ctx, draft, me.name, now)
        if draft.needs_approval:
            summary = {"officials": shown.officials, "speakers": shown.speakers, "public": shown.public,
                       "channels": {c.channel: c.recipients for c in shown.channels},
                       "sms_segments": next((c.sms.segments for c in shown.channels if c.sms), 0),
                       "gaps": shown.gaps[:20], "drill": draft.drill,
                       # What each channel sends, as the author saw it: the approver reads the same.
                       "texts": [[c.label, c.text] for c in shown.channels]
                       + ([["应急广播", shown.speaker_text]] if shown.speaker_text else []),
                       "description": draft.description, "instruction": draft.instruction}
            approval_id = await app.approvals.request_publish(
                xml, me, hazard=draft.hazard, colour=draft.colour.value, step=draft.step.value,
                headline=draft.headline, area_desc=draft.area.description, summary=summary)
            raise web.HTTPSeeOther(f"/console/approvals/{approval_id}")
        try:
            result = await app.ingestor.submit_cap(xml, source="console", actor=me.name)
        except IngestError as e:
            return await page(request, values, picked, status=e.status, shown=shown,
                              error=f"未能发布：{e.title}（{e.detail}）")
        raise web.HTTPSeeOther(f"/console/compose?published={result.alert_id}")

    async def approvals_page(request: web.Request) -> web.StreamResponse:
        me = principal(request)
        pending = await approval_views.approvals(app.db)
        decided = [a for a in await approval_views.approvals(app.db, None, limit=30) if a["state"] != "pending"]
        return render(request, "approvals.html", title="待审核", pending=pending, decided=decided,
                      may_approve=allowed(me.role, "alerts.approve"), beijing_iso=_beijing_iso,
                      step_label=app.templates.step_label)

    async def approval_page(request: web.Request, status: int = 200, error: str = "") -> web.Response:
        me = principal(request)
        row = await approval_views.approval(app.db, _id(request))
        if row is None:
            raise web.HTTPNotFound()
        alert = await alert_summary(app.db, row["alert_id"], app.clock.now()) if row["alert_id"] else None
        return render(request, "approval.html", status=status, title=f"待审核 #{row['id']}", a=row, alert=alert,
                      error=error, may_approve=allowed(me.role, "alerts.approve"), own=row["author"] == me.name,
                      beijing_iso=_beijing_iso, channel_zh=CHANNEL_ZH, step_label=app.templates.step_label)

    async def approval_get(request: web.Request) -> web.StreamResponse:
        return await approval_page(request)

    async def approve(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        note = str(form.get("note", "")).strip()[:500]
        try:
            await app.approvals.approve(_id(request), _person(request), note)
        except ApprovalError as e:
            return await approval_page(request, e.status, e.zh)
        raise web.HTTPSeeOther(f"/console/approvals/{_id(request)}")

    async def reject(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        note = str(form.get("note", "")).strip()[:500]
        if not note:
            return await approval_page(request, 400, "驳回时请填写理由。")
        try:
            await app.approvals.reject(_id(request), _person(request), note)
        except ApprovalError as e:
            return await approval_page(request, e.status, e.zh)
        raise web.HTTPSeeOther(f"/console/approvals/{_id(request)}")

    async def cancel(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        reason = str(form.get("reason", "")).strip()[:500] or "值班台解除"
        try:
            approval_id, _ = await app.approvals.request_cancel(_id(request), reason, _person(request))
        except ApprovalError as e:
            return render(request, "error.html", status=e.status, title="不能解除", message=e.zh)
        raise web.HTTPSeeOther(f"/console/approvals/{approval_id}")

    return [
        (web.get("/console/compose", compose_page, name="console_compose"), "alerts.compose"),
        (web.post("/console/compose", compose_submit, name="console_compose_submit"), "alerts.compose"),
        (web.get("/console/approvals", approvals_page, name="console_approvals"), "console.view"),
        (web.get("/console/approvals/{id}", approval_get, name="console_approval"), "console.view"),
        (web.post("/console/approvals/{id}/approve", approve, name="console_approve"), "alerts.approve"),
        (web.post("/console/approvals/{id}/reject", reject, name="console_reject"), "alerts.approve"),
        (web.post("/console/alerts/{id}/cancel", cancel, name="console_cancel"), "alerts.cancel"),
    ]


def _beijing_iso(value: str | None) -> str:
    return beijing(datetime.fromisoformat(value)) if value else ""
