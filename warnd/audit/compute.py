"""The report's tables, computed from facts (warnd.audit.facts). Pure: rows in, report out.

`build_report(input, labels, ...)` is the one entry point; the CLI, the demo and the console
call it with rows from warnd.audit.load."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from warnd.audit.facts import (
    KINDS,
    PHONE,
    REACH_PURPOSES,
    SPEAKER,
    STEPS,
    CallFact,
    Facts,
    Send,
    Unit,
    build_facts,
    channel_order,
    sends_by,
    step_order,
)
from warnd.audit.labels import Labels
from warnd.audit.model import BOOL, INT, MINUTES, RATE, TEXT, TIME, AuditReport, Column, Table
from warnd.audit.public import PublicFacts
from warnd.audit.rows import AuditInput
from warnd.audit.stats import mask_phone, median, minutes, percentile, rate

DEFAULT_TARGET = 0.95
ALL = "all"


class _Builder:
    def __init__(self, facts: Facts, inp: AuditInput, labels: Labels, target: float, may_see_phones: bool):
        self.f, self.inp, self.L, self.target, self.may_see_phones = facts, inp, labels, target, may_see_phones
        self.kinds = facts.kinds()
        channels = {s.d.channel for s in facts.sends if s.d.purpose in REACH_PURPOSES}
        self.channels = sorted(channels, key=channel_order)
        # Reach columns: person channels used, loudspeakers if any played a command, phoned
        # confirmations if any.
        reach = {c for u in facts.units.values() for c in u.reached}
        if facts.speakers:
            reach.add(SPEAKER)
        self.reach_channels = self.channels + [c for c in (SPEAKER, PHONE) if c in reach]
        self.public = PublicFacts(facts, inp.public_targets)

    # --- helpers ------------------------------------------------------------------------------

    def table(self, key: str, specs: Iterable[tuple[str, str]], rows: list[dict[str, Any]]) -> Table:
        spec = self.L.table(key)
        labels = spec.get("columns", {})
        columns = [Column(k, str(labels.get(k) or self._channel_label(k)), kind) for k, kind in specs]
        return Table(key, str(spec["title"]), columns, rows, str(spec.get("note", "")))

    def _channel_label(self, key: str) -> str:
        return self.L.word("channels", key) + ("送达" if key not in (SPEAKER, PHONE) else "")

    def kind(self, k: str) -> str:
        return self.L.word("kinds", k)

    def step(self, s: str) -> str:
        return self.L.word("steps", s)

    def township(self, code: str | None) -> str:
        return self.f.places.name(code) if code else self.L.word("words", "county_level")

    def warnings_of(self, kind: str) -> list[int]:
        return [w.id for w in self.f.warnings.values() if w.kind == kind]

    def steps_of(self, kind: str) -> list[str]:
        return sorted({w.step for w in self.f.warnings.values() if w.kind == kind}, key=step_order)

    def warning_calls(self) -> list[CallFact]:
        return [c for c in self.f.calls if not c.fallback]

    # --- tables -------------------------------------------------------------------------------

    def issues(self) -> Table:
        """期 and 人次 per channel and step, real and drill apart."""
        by = sends_by(self.f)
        rows: list[dict[str, Any]] = []
        for kind in self.kinds:
            grand: list[Send] = []
            grand_plays = 0
            for step in self.steps_of(kind):
                step_sends: list[Send] = []
                for ch in self.channels:
                    sends = by.get((kind, step, ch), [])
                    if sends:
                        rows.append(self._issue_row(kind, step, ch, sends))
                        step_sends += sends
                plays = [sp for sp in self.f.speakers if sp.warning.kind == kind and sp.warning.step == step
                         and sp.played is not None]
                if plays or any(sp.warning.kind == kind and sp.warning.step == step for sp in self.f.speakers):
                    rows.append({"kind": self.kind(kind), "step": self.step(step), "channel": self.L.word("channels", SPEAKER),
                                 "issues": len({sp.warning.id for sp in plays}), "person_times": None, "people": None,
                                 "escalation_times": None, "plays": len(plays), "sent": None, "delivered": None,
                                 "undelivered": None, "failed": None})
                accepted = sum(1 for w in self.f.warnings.values() if w.kind == kind and w.step == step)
                rows.append(self._issue_row(kind, step, ALL, step_sends, issues=accepted, plays=len(plays)))
                grand += step_sends
                grand_plays += len(plays)
            rows.append(self._issue_row(kind, ALL, ALL, grand, issues=len(self.warnings_of(kind)), plays=grand_plays))
        return self.table("issues", [("kind", TEXT), ("step", TEXT), ("channel", TEXT), ("issues", INT),
                                     ("person_times", INT), ("people", INT), ("escalation_times", INT),
                                     ("plays", INT), ("sent", INT), ("delivered", INT), ("undelivered", INT),
                                     ("failed", INT)], rows)

    def _issue_row(self, kind: str, step: str, channel: str, sends: list[Send], issues: int | None = None,
                   plays: int | None = None) -> dict[str, Any]:
        reached = [s for s in sends if s.reached]
        return {
            "kind": self.kind(kind), "step": self.step(step),
            "channel": self.L.word("steps", ALL) if channel == ALL else self.L.word("channels", channel),
            "issues": issues if issues is not None else len({s.warning_id for s in reached}),
            "person_times": len(reached), "people": len({s.d.person_id for s in reached}),
            "escalation_times": sum(1 for s in reached if s.d.purpose == "escalation"),
            "plays": plays, "sent": sum(1 for s in sends if s.sent_at is not None),
            "delivered": sum(1 for s in sends if s.delivered), "undelivered": sum(1 for s in sends if s.undelivered),
            "failed": sum(1 for s in sends if s.failed),
        }

    _PUBLIC_SPECS = (("targeted", INT), ("person_times", INT), ("sent", INT), ("delivered", INT),
                     ("undelivered", INT), ("failed", INT), ("opted_out", INT), ("over_budget", INT),
                     ("displaced", INT), ("coverage", RATE), ("coverage_met", BOOL))

    def public_issues(self) -> Table:
        """Public SMS: 期 and 人次 per step, targeted and the coverage rate, real and drill apart."""
        rows: list[dict[str, Any]] = []
        for kind in self.kinds:
            steps = self.public.by_step(kind)
            for step, targets in steps.items():
                rows.append({"kind": self.kind(kind), "step": self.step(step), **self.public.row(targets, self.target)})
            if steps:
                rows.append({"kind": self.kind(kind), "step": self.L.word("steps", ALL),
                             **self.public.row(self.public.of_kind(kind), self.target)})
        return self.table("public_issues", [("kind", TEXT), ("step", TEXT), ("issues", INT), *self._PUBLIC_SPECS],
                          rows)

    def public_villages(self) -> Table:
        rows = []
        for (kind, village), targets in self.public.by_village().items():
            rows.append({"kind": self.kind(kind), "township": self.township(self.f.places.township(village)),
                         "village_code": village, "village": self.f.places.name(village),
                         **self.public.row(targets, self.target)})
        return self.table("public_villages", [("kind", TEXT), ("township", TEXT), ("village_code", TEXT),
                                              ("village", TEXT), *self._PUBLIC_SPECS], rows)

    def speakers(self) -> Table:
        rows: list[dict[str, Any]] = []
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for sp in self.f.speakers:
            groups[(sp.warning.kind, sp.warning.step)].append(sp)
        fallback: dict[tuple[str, str], list[CallFact]] = defaultdict(list)
        for c in self.f.calls:
            if c.fallback:
                fallback[(c.warning.kind, c.warning.step)].append(c)
        for (kind, step) in sorted(set(groups) | set(fallback), key=lambda k: (KINDS.index(k[0]), step_order(k[1]))):
            sps = groups.get((kind, step), [])
            villages = {(sp.warning.id, sp.command.village_code) for sp in sps}
            reached = {(sp.warning.id, sp.command.village_code) for sp in sps if sp.played_in_time}
            fb = fallback.get((kind, step), [])
            rows.append({
                "kind": self.kind(kind), "step": self.step(step),
                "issues": len({sp.warning.id for sp in sps if sp.played is not None}), "commands": len(sps),
                "played_in_time": sum(1 for sp in sps if sp.played_in_time),
                "played_late": sum(1 for sp in sps if sp.played is not None and not sp.played_in_time),
                "failed": sum(1 for sp in sps if sp.failed is not None),
                "not_played": sum(1 for sp in sps if sp.played is None),
                "villages": len(villages), "villages_reached": len(reached),
                "coverage": rate(len(reached), len(villages)),
                "fallback_calls": len(fb), "fallback_confirmed": sum(1 for c in fb if c.confirmed),
            })
        return self.table("speakers", [("kind", TEXT), ("step", TEXT), ("issues", INT), ("commands", INT),
                                       ("played_in_time", INT), ("played_late", INT), ("failed", INT),
                                       ("not_played", INT), ("villages", INT), ("villages_reached", INT),
                                       ("coverage", RATE), ("fallback_calls", INT), ("fallback_confirmed", INT)], rows)

    def _coverage_row(self, units: list[Unit]) -> dict[str, Any]:
        calls = [c for u in units for c in u.calls]
        reached = sum(1 for u in units if u.is_reached)
        row: dict[str, Any] = {"units": len(units), "units_reached": reached, "coverage": rate(reached, len(units))}
        for ch in self.reach_channels:
            row[ch] = sum(1 for u in units if ch in u.reached)
        row.update(calls=len(calls), confirmed=sum(1 for c in calls if c.confirmed),
                   confirmed_in_time=sum(1 for c in calls if c.in_time),
                   feedback=sum(c.feedback for c in calls), people_moved=sum(c.people_moved for c in calls),
                   gaps=sum(len(u.gaps) for u in units))
        return row

    def _coverage_specs(self) -> list[tuple[str, str]]:
        return ([(ch, INT) for ch in self.reach_channels]
                + [("calls", INT), ("confirmed", INT), ("confirmed_in_time", INT), ("feedback", INT),
                   ("people_moved", INT), ("gaps", INT)])

    def coverage_townships(self) -> Table:
        groups: dict[tuple[str, str], list[Unit]] = defaultdict(list)
        for u in self.f.units.values():
            groups[(u.warning.kind, u.township or "")].append(u)
        rows = []
        for (kind, town) in sorted(groups, key=lambda k: (KINDS.index(k[0]), k[1])):
            row = {"kind": self.kind(kind), "township_code": town or None, "township": self.township(town or None),
                   **self._coverage_row(groups[(kind, town)])}
            row["target_met"] = None if row["coverage"] is None else row["coverage"] >= self.target
            rows.append(row)
        specs = [("kind", TEXT), ("township_code", TEXT), ("township", TEXT), ("units", INT),
                 ("units_reached", INT), ("coverage", RATE), ("target_met", BOOL), *self._coverage_specs()]
        return self.table("coverage_townships", specs, rows)

    def coverage_villages(self) -> Table:
        groups: dict[tuple[str, str], list[Unit]] = defaultdict(list)
        for u in self.f.units.values():
            if u.village is not None:
                groups[(u.warning.kind, u.village)].append(u)
        rows = []
        for (kind, village) in sorted(groups, key=lambda k: (KINDS.index(k[0]), k[1])):
            units = groups[(kind, village)]
            rows.append({"kind": self.kind(kind), "township": self.township(units[0].township),
                         "village_code": village, "village": self.f.places.name(village),
                         **self._coverage_row(units)})
        specs = [("kind", TEXT), ("township", TEXT), ("village_code", TEXT), ("village", TEXT), ("units", INT),
                 ("units_reached", INT), ("coverage", RATE), *self._coverage_specs()]
        return self.table("coverage_villages", specs, rows)

    @staticmethod
    def _timing(calls: list[CallFact]) -> dict[str, Any]:
        secs = [s for c in calls if (s := c.seconds_to_confirm) is not None]
        confirmed = sum(1 for c in calls if c.confirmed)
        in_time = sum(1 for c in calls if c.in_time)
        return {"calls": len(calls), "confirmed": confirmed, "confirmed_in_time": in_time,
                "in_time_rate": rate(in_time, len(calls)), "carried": sum(1 for c in calls if c.carried),
                "timed": len(secs), "median_minutes": minutes(median(secs)),
                "p90_minutes": minutes(percentile(secs, 90)), "max_minutes": minutes(max(secs, default=None))}

    def confirm_steps(self) -> Table:
        groups: dict[tuple[str, str], list[CallFact]] = defaultdict(list)
        for c in self.warning_calls():
            groups[(c.warning.kind, c.warning.step)].append(c)
        rows = [{"kind": self.kind(k), "step": self.step(s), **self._timing(groups[(k, s)])}
                for k, s in sorted(groups, key=lambda x: (KINDS.index(x[0]), step_order(x[1])))]
        return self.table("confirm_steps", [
            ("kind", TEXT), ("step", TEXT), ("calls", INT), ("confirmed", INT), ("confirmed_in_time", INT),
            ("in_time_rate", RATE), ("carried", INT), ("timed", INT), ("median_minutes", MINUTES),
            ("p90_minutes", MINUTES), ("max_minutes", MINUTES)], rows)

    def confirm_townships(self) -> Table:
        groups: dict[tuple[str, str, str], list[CallFact]] = defaultdict(list)
        for c in self.warning_calls():
            groups[(c.warning.kind, c.township or "", c.warning.step)].append(c)
        rows = []
        for k, town, s in sorted(groups, key=lambda x: (KINDS.index(x[0]), x[1], step_order(x[2]))):
            timing = self._timing(groups[(k, town, s)])
            timing.pop("carried")
            rows.append({"kind": self.kind(k), "township": self.township(town or None), "step": self.step(s),
                         **timing})
        return self.table("confirm_townships", [
            ("kind", TEXT), ("township", TEXT), ("step", TEXT), ("calls", INT), ("confirmed", INT),
            ("confirmed_in_time", INT), ("in_time_rate", RATE), ("timed", INT), ("median_minutes", MINUTES),
            ("p90_minutes", MINUTES), ("max_minutes", MINUTES)], rows)

    def escalations(self) -> Table:
        fired: dict[tuple[str, str, int, str], list[CallFact]] = defaultdict(list)
        for c in self.warning_calls():
            for level, action, _ in c.rungs:
                fired[(c.warning.kind, c.warning.step, level, action)].append(c)
        gaps = Counter[tuple[str, str, int, str]]()
        calls = {c.call.id: c for c in self.warning_calls()}
        for _, cid, action in self.f.escalation_gaps:
            gap = calls.get(cid)
            if gap is not None:
                level = max((lv for lv, a, _ in gap.rungs if a == action), default=0)
                gaps[(gap.warning.kind, gap.warning.step, level, action)] += 1
        rows = [{"kind": self.kind(k), "step": self.step(s), "level": lv, "action": self.L.word("actions", a),
                 "calls": len(fired[(k, s, lv, a)]), "confirmed_after": sum(1 for c in fired[(k, s, lv, a)] if c.confirmed),
                 "no_recipient": gaps.get((k, s, lv, a), 0)}
                for k, s, lv, a in sorted(fired, key=lambda x: (KINDS.index(x[0]), step_order(x[1]), x[2]))]
        return self.table("escalations", [("kind", TEXT), ("step", TEXT), ("level", INT), ("action", TEXT),
                                          ("calls", INT), ("confirmed_after", INT), ("no_recipient", INT)], rows)

    def phone(self, raw: str) -> str:
        return raw if self.may_see_phones else mask_phone(raw)

    def never_confirmed(self) -> Table:
        order = {"duty_room": 0, "open": 1, "cancelled": 2}
        silent = [c for c in self.f.calls if not c.confirmed]
        silent.sort(key=lambda c: (KINDS.index(c.warning.kind), c.warning.id, order[c.outcome], c.township or "",
                                   c.village or "", c.call.role, c.call.id))
        rows = []
        for c in silent:
            p = self.inp.people.get(c.call.person_id)
            rows.append({
                "kind": self.kind(c.warning.kind), "alert_id": c.warning.id, "step": self.step(c.warning.step),
                "call_type": self.L.word("call_types", "fallback" if c.fallback else "warning"),
                "township": self.township(c.township), "village": self.f.places.name(c.village) if c.village else None,
                "role": self.inp.role_labels.get(c.call.role, c.call.role), "name": p.name if p else None,
                "phone": self.phone(p.phone) if p else None, "max_level": c.max_level,
                "last_action": self.L.word("actions", c.last_action) if c.last_action else None,
                "outcome": self.L.word("outcomes", c.outcome), "call_id": c.call.id,
            })
        return self.table("never_confirmed", [
            ("kind", TEXT), ("alert_id", INT), ("step", TEXT), ("call_type", TEXT), ("township", TEXT),
            ("village", TEXT), ("role", TEXT), ("name", TEXT), ("phone", TEXT), ("max_level", INT),
            ("last_action", TEXT), ("outcome", TEXT), ("call_id", INT)], rows)

    def speakers_not_played(self) -> Table:
        rows = []
        for sp in sorted((sp for sp in self.f.speakers if sp.played is None),
                         key=lambda sp: (KINDS.index(sp.warning.kind), sp.warning.id, sp.command.village_code,
                                         sp.command.device_id)):
            cmd = sp.command
            reason = (sp.failed.data.get("reason") if sp.failed is not None else None) or cmd.reason
            rows.append({"kind": self.kind(sp.warning.kind), "alert_id": sp.warning.id,
                         "step": self.step(sp.warning.step), "township": self.township(sp.township),
                         "village": self.f.places.name(cmd.village_code), "device_id": cmd.device_id,
                         "state": self.L.word("speaker_states", cmd.state), "reason": reason,
                         "fallback": cmd.fallback})
        return self.table("speakers_not_played", [
            ("kind", TEXT), ("alert_id", INT), ("step", TEXT), ("township", TEXT), ("village", TEXT),
            ("device_id", TEXT), ("state", TEXT), ("reason", TEXT), ("fallback", BOOL)], rows)

    def warnings(self) -> Table:
        rows = []
        by_warning: dict[int, list[Unit]] = defaultdict(list)
        for u in self.f.units.values():
            by_warning[u.warning.id].append(u)
        for w in sorted(self.f.warnings.values(), key=lambda w: (KINDS.index(w.kind), w.accepted_at, w.id)):
            calls = [c for c in self.warning_calls() if c.warning.id == w.id]
            units = by_warning.get(w.id, [])
            reached = sum(1 for u in units if u.is_reached)
            a = w.alert
            rows.append({
                "alert_id": w.id, "identifier": a.identifier if a else None, "kind": self.kind(w.kind),
                "step": self.step(w.step), "colour": self.L.word("colours", w.colour),
                "headline": a.headline if a else None, "source": a.source if a else None,
                "received_at": w.accepted_at, "state": self.L.word("alert_states", a.state) if a else None,
                "calls": len(calls), "confirmed": sum(1 for c in calls if c.confirmed),
                "confirmed_in_time": sum(1 for c in calls if c.in_time), "units": len(units),
                "units_reached": reached, "coverage": rate(reached, len(units)),
            })
        return self.table("warnings", [
            ("alert_id", INT), ("identifier", TEXT), ("kind", TEXT), ("step", TEXT), ("colour", TEXT),
            ("headline", TEXT), ("source", TEXT), ("received_at", TIME), ("state", TEXT), ("calls", INT),
            ("confirmed", INT), ("confirmed_in_time", INT), ("units", INT), ("units_reached", INT),
            ("coverage", RATE)], rows)

    def reconciliation(self) -> Table:
        W = self.L.raw["words"]
        checks = self.L.raw["checks"]
        deliveries_sent = Counter(self.f.owner.get(d.alert_id or -1) for d in self.inp.deliveries
                                  if d.sent_at is not None)
        feedback_rows = Counter[int]()
        for fb in self.inp.feedback:
            wid = self.f.owner.get(fb.alert_id)
            if wid is not None:
                feedback_rows[wid] += fb.people_moved
        rows: list[dict[str, Any]] = []
        for w in sorted(self.f.warnings.values(), key=lambda w: w.id):
            calls = [c for c in self.f.calls if c.warning.id == w.id and not c.fallback]
            opened = self.f.calls_opened.get(w.id)
            pairs: list[tuple[str, int | None, int | None]] = [
                ("calls", int(opened.data.get("calls", 0)) if opened is not None else None, len(calls)),
                ("confirmed", sum(1 for c in calls if c.confirmed),
                 sum(1 for c in calls if c.call.state == "confirmed")),
                ("sent", sum(1 for s in self.f.sends if s.warning_id == w.id and s.sent_at is not None),
                 deliveries_sent.get(w.id, 0)),
                ("people_moved", sum(c.people_moved for c in self.f.calls if c.warning.id == w.id),
                 feedback_rows.get(w.id, 0)),
            ]
            check = self.inp.speaker_checks.get(w.id)
            if check is not None:
                pairs.append(("speaker_played", sum(1 for sp in self.f.speakers
                                                    if sp.warning.id == w.id and sp.played_in_time), check.played))
            for key, ev, tb in pairs:
                result = W["untraceable"] if ev is None else W["consistent"] if ev == tb else W["inconsistent"]
                rows.append({"alert_id": w.id, "check": checks[key], "from_events": ev, "from_tables": tb,
                             "result": result})
        for what, n in sorted(self.f.untraceable.items()):
            rows.append({"alert_id": None, "check": f"{what} rows missing for events", "from_events": n,
                         "from_tables": 0, "result": W["inconsistent"]})
        return self.table("reconciliation", [("alert_id", INT), ("check", TEXT), ("from_events", INT),
                                             ("from_tables", INT), ("result", TEXT)], rows)

    def summary(self) -> Table:
        S = self.L.raw["summary"]
        by = sends_by(self.f)
        items: list[tuple[str, str, Callable[[str], Any]]] = []

        def reached(kind: str, step: str | None = None) -> int:
            return sum(1 for (k, s, _), sends in by.items() if k == kind and (step is None or s == step)
                       for x in sends if x.reached)

        def calls(kind: str) -> list[CallFact]:
            return [c for c in self.warning_calls() if c.warning.kind == kind]

        def units(kind: str) -> list[Unit]:
            return [u for u in self.f.units.values() if u.warning.kind == kind]

        def coverage(kind: str) -> float | None:
            us = units(kind)
            return rate(sum(1 for u in us if u.is_reached), len(us))

        def secs(kind: str) -> list[float]:
            return [s for c in calls(kind) if (s := c.seconds_to_confirm) is not None]

        def warnings_at(st: str) -> Callable[[str], Any]:
            return lambda k: sum(1 for w in self.f.warnings.values() if w.kind == k and w.step == st)

        def reached_at(st: str) -> Callable[[str], Any]:
            return lambda k: reached(k, st)

        items.append(("warnings", INT, lambda k: len(self.warnings_of(k))))
        items += [(f"warnings_{st}", INT, warnings_at(st)) for st in STEPS]
        items.append(("person_times", INT, lambda k: reached(k)))
        items += [(f"person_times_{st}", INT, reached_at(st)) for st in STEPS]
        items += [
            ("speaker_plays", INT, lambda k: sum(1 for sp in self.f.speakers if sp.warning.kind == k and sp.played)),
            ("units", INT, lambda k: len(units(k))),
            ("units_reached", INT, lambda k: sum(1 for u in units(k) if u.is_reached)),
            ("coverage", RATE, coverage),
            ("coverage_target", RATE, lambda k: self.target),
            ("coverage_met", BOOL, lambda k: None if coverage(k) is None else (coverage(k) or 0) >= self.target),
            ("calls", INT, lambda k: len(calls(k))),
            ("confirmed", INT, lambda k: sum(1 for c in calls(k) if c.confirmed)),
            ("confirmed_in_time", INT, lambda k: sum(1 for c in calls(k) if c.in_time)),
            ("confirm_rate", RATE, lambda k: rate(sum(1 for c in calls(k) if c.confirmed), len(calls(k)))),
            ("median_minutes", MINUTES, lambda k: minutes(median(secs(k)))),
            ("p90_minutes", MINUTES, lambda k: minutes(percentile(secs(k), 90))),
            ("escalations", INT, lambda k: sum(len(c.rungs) for c in calls(k))),
            ("never_confirmed", INT, lambda k: sum(1 for c in self.f.calls if c.warning.kind == k and not c.confirmed)),
            ("feedback", INT, lambda k: sum(c.feedback for c in self.f.calls if c.warning.kind == k)),
            ("people_moved", INT, lambda k: sum(c.people_moved for c in self.f.calls if c.warning.kind == k)),
            ("speakers_never_played", INT,
             lambda k: sum(1 for sp in self.f.speakers if sp.warning.kind == k and sp.played is None)),
            ("coverage_gaps", INT, lambda k: sum(len(u.gaps) for u in units(k))),
            ("public_issues", INT, lambda k: self.public.row(self.public.of_kind(k), self.target)["issues"]),
            ("public_person_times", INT,
             lambda k: self.public.row(self.public.of_kind(k), self.target)["person_times"]),
            ("public_targeted", INT, lambda k: self.public.row(self.public.of_kind(k), self.target)["targeted"]),
            ("public_coverage", RATE, lambda k: self.public.row(self.public.of_kind(k), self.target)["coverage"]),
        ]
        rows = []
        for key, kind, fn in items:
            row: dict[str, Any] = {"key": key, "item": S[key], "_kind": kind}
            for k in KINDS:
                row[k] = fn(k) if k in self.kinds else None
            rows.append(row)
        return self.table("summary", [("item", TEXT), ("real", TEXT), ("drill", TEXT)], rows)

    # --- chart data ---------------------------------------------------------------------------

    def charts(self, coverage_villages: Table) -> dict[str, Any]:
        timeline: dict[str, dict[str, Any]] = {}
        for kind in self.kinds:
            steps: dict[str, Any] = {}
            for step in self.steps_of(kind):
                calls = [c for c in self.warning_calls() if c.warning.kind == kind and c.warning.step == step]
                times = sorted(c.confirmed_at for c in calls if c.confirmed_at is not None)
                start = min(w.accepted_at for w in self.f.warnings.values() if w.kind == kind and w.step == step)
                steps[step] = {"label": self.step(step), "calls": len(calls), "start": start, "confirmed_at": times,
                               "minutes": sorted(m for c in calls if (m := minutes(c.seconds_to_confirm)) is not None)}
            timeline[kind] = {"label": self.kind(kind), "steps": steps}
        features = []
        status = {}
        for row in coverage_villages.rows:
            if row["kind"] == self.kind(self.kinds[0] if self.kinds else "real"):
                reached, units = row["units_reached"], row["units"]
                status[row["village_code"]] = (
                    "not_reached" if reached < units else
                    "confirmed" if row["calls"] == row["confirmed"] else "reached")
        for code, r in sorted(self.inp.regions.items()):
            if r.level == "village" and r.geometry_wkt:
                features.append({"code": code, "name": r.name, "wkt": r.geometry_wkt,
                                 "status": status.get(code, "not_targeted")})
        if all(f["status"] == "not_targeted" for f in features):
            features = []  # nothing of this scope on the map
        return {"timeline": timeline, "map": features}


def build_report(inp: AuditInput, labels: Labels, *, coverage_target: float = DEFAULT_TARGET,
                 may_see_phones: bool = False, utc_offset_hours: float = 8.0) -> AuditReport:
    """The whole report from rows. `may_see_phones`: the caller's role may see officials'
    phone numbers; otherwise they are masked (139****0001)."""
    facts = build_facts(inp)
    b = _Builder(facts, inp, labels, coverage_target, may_see_phones)
    villages = b.coverage_villages()
    tables = [b.summary(), b.warnings(), b.issues(), b.speakers(), b.coverage_townships(), villages,
              b.confirm_steps(), b.confirm_townships(), b.escalations(), b.never_confirmed(),
              b.speakers_not_played(), b.reconciliation(), b.public_issues(), b.public_villages()]
    scope: dict[str, Any] = ({"alert_id": inp.scope.alert_id} if inp.scope.alert_id is not None
                             else {"from": inp.scope.start, "to": inp.scope.end})
    return AuditReport(title=labels.title, scope=scope, generated_at=inp.generated_at,
                       coverage_target=coverage_target, utc_offset_hours=utc_offset_hours,
                       may_see_phones=may_see_phones, tables=tables, charts=b.charts(villages),
                       words={**{k: str(v) for k, v in labels.raw["words"].items()},
                              **{f"kind_{k}": labels.word("kinds", k) for k in KINDS}})
