"""Subscribing and unsubscribing through the API, and reading the lists (numbers masked unless
the caller's role may see them: warnd.auth.permissions "public.phones")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, func, select

from warnd.core.domain import Level
from warnd.core.phones import mask_phone
from warnd.db.engine import Database
from warnd.db.models import PublicOptOut, PublicRecipient, Region
from warnd.engine import events
from warnd.public.lists import KINDS, parse_phone_cell
from warnd.public.optouts import set_choice


class SubscriptionError(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


def phone_of(text: Any) -> str:
    phone, why = parse_phone_cell(str(text or ""))
    if phone is None:
        raise SubscriptionError("phone", why or "invalid phone number")
    return phone


async def subscribe(db: Database, *, phone: str, region_code: str, kind: str, name: str, source: str,
                    now: datetime, actor: str) -> dict[str, Any]:
    """A number subscribes (扫码订阅 through the county's page, or a duty officer registers it):
    listed in the village/group, and opted back in if it had opted out."""
    if kind not in KINDS:
        raise SubscriptionError("kind", f"unknown list kind (use {', '.join(KINDS)})")
    async with db.session() as s, s.begin():
        region = await s.get(Region, region_code)
        if region is None or region.level not in (Level.VILLAGE, Level.GROUP):
            raise SubscriptionError("region_code", "not a known village or group code")
        row = (await s.exec(select(PublicRecipient).where(
            PublicRecipient.phone == phone, PublicRecipient.region_code == region_code,
            PublicRecipient.kind == kind))).first()
        created = row is None
        if row is None:
            row = PublicRecipient(phone=phone, region_code=region_code, village_code=region_code[:12], kind=kind,
                                  name=name, source=source or "api", consent_date=now.date().isoformat(),
                                  list_name="api", updated_at=now)
            s.add(row)
        else:
            row.active, row.updated_at = True, now
            row.consent_date = now.date().isoformat()
        opted_in = await set_choice(s, phone, False, now, "api", actor) if await s.get(PublicOptOut, phone) else False
        events.record(s, now, "public_subscribed", phone=mask_phone(phone), region_code=region_code, list_kind=kind,
                      channel="api", actor=actor, created=created)
    return {"phone": mask_phone(phone), "region_code": region_code, "kind": kind, "created": created,
            "opted_in_again": opted_in}


async def unsubscribe(db: Database, *, phone: str, now: datetime, actor: str) -> dict[str, Any]:
    async with db.session() as s, s.begin():
        changed = await set_choice(s, phone, True, now, "api", actor)
    return {"phone": mask_phone(phone), "opted_out": True, "changed": changed}


async def recipients(db: Database, *, village: str | None, limit: int, offset: int,
                     full_numbers: bool) -> dict[str, Any]:
    async with db.read() as s:
        q = select(PublicRecipient).where(col(PublicRecipient.active).is_(True))
        n = select(func.count()).select_from(PublicRecipient).where(col(PublicRecipient.active).is_(True))
        if village:
            q, n = q.where(PublicRecipient.village_code == village), n.where(PublicRecipient.village_code == village)
        rows = (await s.exec(q.order_by(col(PublicRecipient.village_code), col(PublicRecipient.id)).limit(
            limit).offset(offset))).all()
        total = (await s.exec(n)).one()
        out = set((await s.exec(select(PublicOptOut.phone).where(
            col(PublicOptOut.opted_out).is_(True), col(PublicOptOut.phone).in_([r.phone for r in rows])))).all())
    return {"total": total, "masked": not full_numbers, "recipients": [{
        "id": r.id, "phone": r.phone if full_numbers else mask_phone(r.phone), "name": r.name,
        "region_code": r.region_code, "village_code": r.village_code, "kind": r.kind, "kind_label": KINDS.get(r.kind),
        "source": r.source, "consent_date": r.consent_date, "shelter": r.shelter, "opted_out": r.phone in out,
    } for r in rows]}


async def export_rows(db: Database) -> list[list[str]]:
    """Every active listing with its full number (for roles that may export them)."""
    async with db.read() as s:
        rows = (await s.exec(select(PublicRecipient).where(col(PublicRecipient.active).is_(True)).order_by(
            col(PublicRecipient.village_code), col(PublicRecipient.id)))).all()
        out = set((await s.exec(select(PublicOptOut.phone).where(col(PublicOptOut.opted_out).is_(True)))).all())
    header = ["手机号码", "姓名", "行政区划代码", "名单类型", "来源", "同意日期", "转移地点", "已退订"]
    return [header] + [[r.phone.removeprefix("+86"), r.name, r.region_code, KINDS.get(r.kind, r.kind), r.source,
                        r.consent_date or "", r.shelter, "是" if r.phone in out else ""] for r in rows]
