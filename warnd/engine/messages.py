"""Rendering message bodies from the operator's templates."""

from __future__ import annotations

from dataclasses import dataclass

from warnd.core.domain import AlertStatus, PersonView
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.models import Alert, Call

DRILL_TAGS = {AlertStatus.EXERCISE.value: "【演练】", AlertStatus.TEST.value: "【测试】"}
MAX_INSTRUCTION = 120  # keeps an SMS within a few segments; the full text is in the console


@dataclass(frozen=True)
class MessageContext:
    templates: Templates
    tag: str
    sender: str
    headline: str
    step: str
    colour: str
    instruction: str
    area: str

    @classmethod
    def of(cls, alert: Alert, templates: Templates) -> MessageContext:
        instruction = alert.instruction.strip()
        if len(instruction) > MAX_INSTRUCTION:
            instruction = instruction[: MAX_INSTRUCTION - 1] + "…"
        return cls(
            templates=templates, tag=DRILL_TAGS.get(alert.status, ""), sender=alert.sender_name,
            headline=alert.headline, step=templates.step_label(alert.step), colour=alert.colour,
            instruction=instruction, area=alert.area_desc,
        )


def render(ctx: MessageContext, template: str, recipient: PersonView, *, roles: Roles,
           call: Call | None = None, official: PersonView | None = None,
           region_name: str = "", **extra: object) -> str:
    return ctx.templates.render(
        template, tag=ctx.tag, sender=ctx.sender, headline=ctx.headline, step=ctx.step,
        colour=ctx.colour, instruction=ctx.instruction, area=ctx.area, name=recipient.name,
        code=call.short_code if call else extra.pop("code", ""), official=official.name if official else "",
        role=roles.label(official.role) if official else "", region=region_name, **extra,
    )


def address_for(person: PersonView, channel: str) -> str:
    if channel == "wecom":
        return person.wecom_userid or ""
    if channel == "voice":
        return person.phone or person.phone2 or ""  # a landline-only official can still be called
    return person.phone  # sms: the mobile, "" when there is none
