"""The public's side of the report: 期 and 人次 of public SMS per step, and the coverage rate
(delivered ÷ targeted) per village and overall, from the public planner's targets and the
delivery events of their messages. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from warnd.audit.facts import KINDS, Facts, Send, step_order
from warnd.audit.rows import PublicTargetRow
from warnd.audit.stats import rate

PUBLIC = "public"  # delivery purpose
ALL = "all"


class PublicFacts:
    def __init__(self, facts: Facts, targets: Iterable[PublicTargetRow]):
        self.f = facts
        self.sends: dict[int, Send] = {s.d.id: s for s in facts.sends if s.d.purpose == PUBLIC}
        self.targets = [t for t in targets if t.alert_id in facts.warnings]

    def kind_of(self, t: PublicTargetRow) -> str:
        return self.f.warnings[t.alert_id].kind

    def step_of(self, t: PublicTargetRow) -> str:
        return self.f.warnings[t.alert_id].step

    def send_of(self, t: PublicTargetRow) -> Send | None:
        return self.sends.get(t.delivery_id) if t.delivery_id is not None else None

    def row(self, targets: list[PublicTargetRow], target: float) -> dict[str, Any]:
        counted = [t for t in targets if t.decision != "opted_out"]
        sends = [s for t in counted if (s := self.send_of(t)) is not None]
        reached = [s for s in sends if s.reached]
        delivered = sum(1 for s in sends if s.delivered)
        cov = rate(delivered, len(counted))
        return {"issues": len({s.warning_id for s in reached}), "targeted": len(counted),
                "person_times": len(reached), "sent": sum(1 for s in sends if s.sent_at is not None),
                "delivered": delivered, "undelivered": sum(1 for s in sends if s.undelivered),
                "failed": sum(1 for s in sends if s.failed),
                "opted_out": sum(1 for t in targets if t.decision == "opted_out"),
                "over_budget": sum(1 for t in targets if t.decision == "over_budget"),
                "displaced": sum(1 for t in targets if t.decision == "displaced"),
                "coverage": cov, "coverage_met": None if cov is None else cov >= target}

    def by_step(self, kind: str) -> dict[str, list[PublicTargetRow]]:
        out: dict[str, list[PublicTargetRow]] = defaultdict(list)
        for t in self.targets:
            if self.kind_of(t) == kind:
                out[self.step_of(t)].append(t)
        return dict(sorted(out.items(), key=lambda kv: step_order(kv[0])))

    def by_village(self) -> dict[tuple[str, str], list[PublicTargetRow]]:
        out: dict[tuple[str, str], list[PublicTargetRow]] = defaultdict(list)
        for t in self.targets:
            out[(self.kind_of(t), t.village_code)].append(t)
        return {k: out[k] for k in sorted(out, key=lambda k: (KINDS.index(k[0]), k[1]))}

    def of_kind(self, kind: str) -> list[PublicTargetRow]:
        return [t for t in self.targets if self.kind_of(t) == kind]
