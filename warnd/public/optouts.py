"""Opting out of (and back into) public messages: 回复TD退订 by SMS, or through the API. The
latest choice per number is kept in `public_opt_outs`; every change is an event with the time,
the channel and who acted, the number masked."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import InboundReply
from warnd.core.phones import mask_phone
from warnd.core.replies import parse_subscription
from warnd.db.models import PublicOptOut, PublicRecipient
from warnd.engine import events

log = structlog.get_logger("warnd.public")


async def set_choice(s: AsyncSession, phone: str, opted_out: bool, now: datetime, channel: str,
                     actor: str = "") -> bool:
    """Record a number's choice; True when it changed anything."""
    row = await s.get(PublicOptOut, phone)
    if row is not None and row.opted_out == opted_out:
        return False
    if row is None:
        s.add(PublicOptOut(phone=phone, opted_out=opted_out, at=now, channel=channel, actor=actor))
    else:
        row.opted_out, row.at, row.channel, row.actor = opted_out, now, channel, actor
    events.record(s, now, "public_opted_out" if opted_out else "public_opted_in", phone=mask_phone(phone),
                  channel=channel, actor=actor)
    log.info("public opt-out" if opted_out else "public opt-in", phone=mask_phone(phone), channel=channel)
    return True


async def opted_out(s: AsyncSession, phones: list[str] | None = None) -> set[str]:
    q = select(PublicOptOut.phone).where(col(PublicOptOut.opted_out).is_(True))
    return {p for p in (await s.exec(q)).all() if phones is None or p in phones}


class SmsOptOuts:
    """What the inbound handler asks about each reply (engine.inbound.Subscriptions): a reply of
    退订/TD from a number on a public list (or already opted out) opts it out; 订阅/DY back in."""

    async def on_reply(self, s: AsyncSession, reply: InboundReply, now: datetime) -> str | None:
        choice = parse_subscription(reply.text)
        if choice is None:
            return None
        listed = (await s.exec(select(PublicRecipient.id).where(
            PublicRecipient.phone == reply.from_address).limit(1))).first()
        known = await s.get(PublicOptOut, reply.from_address)
        if listed is None and known is None:
            return None  # not a public recipient: the reply is the engine's as usual
        changed = await set_choice(s, reply.from_address, not choice, now, "sms_reply", reply.provider)
        return ("opted out" if not choice else "opted in") + ("" if changed else " (again)")
