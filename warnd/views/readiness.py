"""`warnd check`: load the facts for the readiness checks (warnd.core.readiness), and say the
result in Chinese for people or as JSON for machines and the console.

Loading is thin: the roster snapshot the engine itself plans with (RosterCache), the speaker
registry, the feed_state table and the feed sources' kinds and intervals. Checks that need a
network call (provider credentials tried with a dry call) plug in as `probes`: async
callables returning findings, run after the pure checks.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlmodel import select

from warnd.core.domain import Level, RegionView, Step
from warnd.core.phones import national_format
from warnd.core.policy import Policy
from warnd.core.readiness import (
    Finding,
    Readiness,
    ReadinessInput,
    Severity,
    SourceFacts,
    SpeakerFacts,
    assess,
)
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import FeedState, Speaker
from warnd.engine.roster import RosterCache

Probe = Callable[[datetime], Awaitable[list[Finding]]]
"""A check that needs I/O, e.g. an SMS provider's credentials tried with a dry call. It
returns findings with its own `check` name (e.g. "providers") and codes; give it a TITLES
entry (or it is shown by its code)."""

STEP_ZH = {Step.FORECAST: "预报", Step.WARNING: "预警", Step.IMMINENT: "临灾预警"}
BEIJING = timezone(timedelta(hours=8))


def _when(t: datetime, fmt: str = "%m-%d %H:%M") -> str:
    return t.astimezone(BEIJING).strftime(fmt)


async def load_input(db: Database, policy: Policy, now: datetime, *, speaker_stale_after: timedelta,
                     sources: Mapping[str, tuple[str, float | None]] | None = None) -> ReadinessInput:
    """`sources`: configured feed sources, name → (kind, poll interval); feed_state rows of
    sources no longer configured are still checked for errors."""
    snap = await RosterCache(db, ttl=0).get()
    async with db.read() as s:
        conn = await s.connection()
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        speakers = (await s.exec(select(Speaker).where(Speaker.active == True))).all() if "speakers" in tables else []  # noqa: E712
        states = {st.source: st for st in (await s.exec(select(FeedState))).all()} if "feed_state" in tables else {}
    configured = dict(sources or {})
    source_facts = []
    for name in sorted(set(configured) | set(states)):
        kind, interval = configured.get(name, (None, None))
        st = states.get(name)
        source_facts.append(SourceFacts(
            name=name, kind=kind, interval_seconds=interval,
            last_success_at=st.last_success_at if st else None, last_error=st.last_error if st else None,
            last_error_at=st.last_error_at if st else None, failures=st.failures if st else 0))
    return ReadinessInput(
        regions=snap.regions, people=snap.people, policy=policy, now=now, index=snap.index,
        speakers=[SpeakerFacts(sp.device_id, sp.region_code, sp.online, sp.last_seen_at) for sp in speakers],
        sources=source_facts, speaker_stale_after=speaker_stale_after,
    )


def source_kinds(path: Path | None) -> dict[str, tuple[str, float | None]]:
    """Kinds and poll intervals from sources.toml, read leniently: `warnd check` must say what
    it can even where the daemon's secrets (env:NAME) are not set."""
    if path is None:
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # the daemon refuses to start on it and says why; not this check's business
    out: dict[str, tuple[str, float | None]] = {}
    for name, spec in (raw.get("sources") or {}).items():
        if isinstance(spec, dict) and spec.get("enabled", True):
            interval = spec.get("interval_seconds", 60.0)
            out[name] = (str(spec.get("kind", "")), float(interval) if isinstance(interval, int | float) else None)
    return out


async def check_readiness(db: Database, policy: Policy, now: datetime, *, speaker_stale_after: timedelta,
                          sources: Mapping[str, tuple[str, float | None]] | None = None,
                          probes: Sequence[Probe] = ()) -> tuple[Readiness, ReadinessInput]:
    inp = await load_input(db, policy, now, speaker_stale_after=speaker_stale_after, sources=sources)
    extra = [f for probe in probes for f in await probe(now)]
    return assess(inp, extra), inp


# --- words for people --------------------------------------------------------------------------

# code → (section title, what it means / what to do). The title groups findings in the text.
TITLES: dict[str, tuple[str, str]] = {
    "no_regions": ("没有行政区划", "数据库里没有任何行政区划：先用 warnd roster import 导入行政区划表和责任人名单"),
    "no_duty_officer": ("县值班室没有值班员",
                        "叫应无人确认时会转给值班室，责任人空缺也通知值班室，现在这些都将无人接收。"
                        "请在名单中加入县级“值班员”"),
    "duty_room_no_mobile": ("值班员都没有手机号", "值班室收不到短信通知"),
    "nobody_to_call": ("必需职务全部空缺", "预警到这些地方时，没有一个必需的责任人可以叫应"),
    "role_unfilled": ("必需职务无人担任", "括号里是需要这一职务的预警阶段；届时将作为责任人空缺报给值班室"),
    "no_deputy": ("没有替补人（AB角）的责任人", "本人不应时，替补叫应这一步将落空"),
    "landline_only": ("只有固定电话的责任人", "短信永远发不到，只能打电话叫应"),
    "phone_not_mobile": ("手机号码一栏是固定电话", "短信发不到"),
    "phone_invalid": ("电话号码无效", "请核对号码"),
    "no_phone": ("没有任何电话的责任人", "无法通过短信或电话联系"),
    "speaker_never_seen": ("喇叭从未上线", "从未连上过平台，临灾时无法确认能播放"),
    "speaker_offline": ("喇叭离线", "临灾时将转为鸣锣吹哨/敲门入户"),
    "speaker_stale": ("喇叭心跳超时", "已有一段时间没有心跳"),
    "source_failing": ("信息源出错", "最近一次获取或推送失败"),
    "source_stale": ("信息源长时间没有更新", "可能已中断"),
    "source_never": ("信息源从未成功获取", "请检查地址和凭据"),
    "source_never_pushed": ("信息源尚未推送过", "推送类信息源在没有预警时不推送，属正常"),
}
SEVERITY_ZH = {Severity.ERROR: "错误", Severity.WARNING: "警告", Severity.INFO: "提示"}
STATUS_ZH = {"ready": "已就绪", "warnings": "有警告，建议汛前处理", "errors": "有错误，未就绪，必须在汛前处理"}


@dataclass(frozen=True)
class Names:
    """Codes to words: regions as 乡镇·村·组 paths, roles by label."""

    regions: Mapping[str, RegionView]
    roles: Roles

    def region(self, code: str | None) -> str:
        if code is None:
            return ""
        parts: list[str] = []
        c: str | None = code
        while c is not None and c in self.regions:
            r = self.regions[c]
            if r.level is Level.COUNTY and parts:
                break  # 青山镇·石门村, not 示例县·青山镇·石门村
            parts.insert(0, r.name)
            c = r.parent_code
        return "·".join(parts) or code

    def roles_of(self, roles: Sequence[str]) -> str:
        return "、".join(self.roles.label(r) for r in roles)


def _steps(steps: Sequence[Step]) -> str:
    return "、".join(STEP_ZH.get(s, str(s)) for s in steps)


def describe(f: Finding, names: Names) -> str:
    """One finding as one line of Chinese (without the section title)."""
    where = names.region(f.region_code)
    who = f"{names.roles_of(f.roles)} {f.person_name}" if f.person_name else names.roles_of(f.roles)
    phone = f"（{national_format(f.phone)}）" if f.phone else ""
    if f.code == "nobody_to_call":
        return f"{where}：{names.roles_of(f.roles)}都无人担任（{_steps(f.steps)}）"
    if f.code == "role_unfilled":
        return f"{where}：{who}（{_steps(f.steps)}）"
    if f.code in ("no_duty_officer", "no_regions"):
        return TITLES[f.code][1]
    if f.code == "duty_room_no_mobile":
        return f"{where}：{f.detail}只有固定电话，{TITLES[f.code][1]}"
    if f.check in ("deputies", "phones"):
        return f"{where}：{who}{phone}"
    if f.check == "speakers":
        return f"{where}：{f.device_id}" + (f"（最后心跳 {_when(f.since)}）" if f.since else "")
    if f.check == "sources":
        since = f"，最后成功 {_when(f.since)}" if f.since else ""
        err = f"，错误：{f.detail}" if f.detail else ""
        return f"{f.source}{since}{err}"
    return f"{where}：{f.detail or f.code}" if where else (f.detail or f.code)


def _merge_lines(lines: list[str]) -> list[str]:
    """"石门村：村主任（…）" and "石门村：网格员（…）" → "石门村：村主任（…）；网格员（…）"."""
    out: dict[str, list[str]] = {}
    for line in lines:
        head, sep, tail = line.partition("：")
        if sep:
            out.setdefault(head, []).append(tail)
        else:
            out.setdefault(line, [])
    return [f"{h}：{'；'.join(t)}" if t else h for h, t in out.items()]


def format_readiness(r: Readiness, names: Names, county: str = "", max_lines: int = 30) -> str:
    c = r.counts
    lines = [f"汛前检查：{county or '本县'}（北京时间 {_when(r.checked_at, '%Y-%m-%d %H:%M')}）",
             f"检查了：{c.get('township', 0)}个乡镇、{c.get('village', 0)}个村、{c.get('group', 0)}个组，"
             f"责任人{c.get('people', 0)}人，喇叭{c.get('speakers', 0)}台，信息源{c.get('sources', 0)}个"]
    for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        found = r.of(severity)
        if not found:
            continue
        lines.append(f"{SEVERITY_ZH[severity]}（{len(found)}项）")
        by_code: dict[str, list[Finding]] = defaultdict(list)
        for f in found:
            by_code[f.code].append(f)
        rank = {code: i for i, code in enumerate(TITLES)}
        for code, items in sorted(by_code.items(), key=lambda kv: rank.get(kv[0], len(rank))):
            title, meaning = TITLES.get(code, (code, ""))
            if code in ("no_duty_officer", "no_regions"):
                lines.append(f"  {title}：{meaning}")
                continue
            lines.append(f"  {title}（{len(items)}项）：{meaning}" if meaning else f"  {title}（{len(items)}项）：")
            body = [describe(f, names) for f in items]
            if code in ("role_unfilled", "speaker_never_seen", "speaker_offline", "speaker_stale", "no_deputy"):
                body = _merge_lines(body)
            for line in body[:max_lines]:
                lines.append(f"    {line}")
            if len(body) > max_lines:
                lines.append(f"    ……另有{len(body) - max_lines}条（--format json 可看全部）")
    if not r.findings:
        lines.append("没有发现问题")
    lines.append(f"结论：{STATUS_ZH[r.status]}（退出码 {r.exit_code}）")
    return "\n".join(lines)


def readiness_json(r: Readiness, names: Names) -> dict[str, Any]:
    """The structured result, with the words a console shows beside the codes."""
    def one(f: Finding) -> dict[str, Any]:
        title, meaning = TITLES.get(f.code, (f.code, ""))
        return {
            "check": f.check, "code": f.code, "severity": f.severity.value, "title": title, "meaning": meaning,
            "text": describe(f, names), "region_code": f.region_code,
            "region_name": names.region(f.region_code) if f.region_code else None,
            "roles": list(f.roles), "role_labels": [names.roles.label(x) for x in f.roles],
            "steps": [s.value for s in f.steps], "person_id": f.person_id, "person_name": f.person_name,
            "phone": f.phone, "device_id": f.device_id, "source": f.source,
            "since": f.since.isoformat() if f.since else None, "detail": f.detail,
        }

    return {
        "status": r.status, "exit_code": r.exit_code, "checked_at": r.checked_at.isoformat(),
        "counts": dict(r.counts),
        "summary": {s.value: len(r.of(s)) for s in Severity},
        "findings": [one(f) for f in r.findings],
    }
