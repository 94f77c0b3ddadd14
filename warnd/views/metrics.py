"""What an operator watches, as Prometheus metrics (GET /metrics, docs/operations.md).

Two kinds of figures:
- this process's: per engine module pass timing and lateness (engine/module.py's
  ModuleStats), the process's memory and CPU (the client library's process collector);
- the county's, counted from the database at scrape time: queue depth and age per channel and
  purpose, deliveries by state, send latency (row created → provider accepted) per channel and
  provider, open and overdue calls and how overdue, confirmations by channel and time to
  confirm, calls by ladder rung, loudspeaker commands and fleet, feed and station lag, events by
  kind and provider errors by kind and by reason.

Every instance of a county answers the database figures alike: aggregate them with max(),
not sum() (deploy/grafana-warnd.json does). Names are listed in METRIC_NAMES; the dashboard
and the alert rules in deploy/ may only use those (tests/integration/test_metrics.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import ColumnElement, Float, case, cast, func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from channels.base import ERROR_REASONS
from warnd.core.domain import CallState, DeliveryState, Purpose
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery, Event, FeedState, SpeakerCommand, StationState
from warnd.engine.module import ModuleStats
from warnd.speakers.coverage import fleet_health

QUEUED = (DeliveryState.PENDING.value, DeliveryState.SENDING.value)
PROVIDER_ERRORS = ("delivery_retry", "delivery_in_doubt", "delivery_failed", "delivery_undelivered")
CONFIRM_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
CONFIRM_WINDOW = timedelta(hours=1)  # time to confirm: over the calls confirmed this recently
SEND_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SEND_WINDOW = timedelta(minutes=15)  # send latency: over the rows sent this recently
# The reason of an error event recorded before events carried one (channels.base.ERROR_REASONS).
LEGACY_REASON = {"delivery_in_doubt": "in_doubt", "delivery_undelivered": "undelivered"}

# name → (type, help). The exposition adds _total to counters and _bucket/_gsum/_gcount to
# gauge histograms; process_* come from the client library.
METRIC_NAMES: dict[str, tuple[str, str]] = {
    "warnd_info": ("gauge", "This warnd: its county (always 1)."),
    "warnd_module_passes": ("counter", "Completed passes of an engine module."),
    "warnd_module_steps": ("counter", "Steps of an engine module that did work."),
    "warnd_module_errors": ("counter", "Passes of an engine module that failed (and were retried)."),
    "warnd_module_timeouts": ("counter", "Passes of an engine module abandoned after the pass timeout."),
    "warnd_module_slow_passes": ("counter", "Passes of an engine module slower than the slow-pass warning."),
    "warnd_module_pass_seconds": ("counter", "Seconds spent in passes of an engine module."),
    "warnd_module_last_pass_seconds": ("gauge", "Duration of the module's last pass."),
    "warnd_module_max_pass_seconds": ("gauge", "Longest pass of the module since start."),
    "warnd_module_lateness_seconds": ("gauge", "Clock time between work falling due and the pass that handled it "
                                               "(last pass)."),
    "warnd_module_max_lateness_seconds": ("gauge", "Largest lateness of the module since start."),
    "warnd_module_running": ("gauge", "1 while the module's loop runs."),
    "warnd_module_busy": ("gauge", "1 while the module is in a pass."),
    "warnd_deliveries": ("gauge", "Outbox rows by channel, purpose and state."),
    "warnd_deliveries_queued": ("gauge", "Outbox rows waiting to be sent or being sent (pending, sending)."),
    "warnd_deliveries_queue_age_seconds": ("gauge", "Age of the oldest queued outbox row."),
    "warnd_provider_errors": ("counter", "Failed sends and reports by channel and kind "
                                         "(delivery_retry, delivery_in_doubt, delivery_failed, delivery_undelivered)."),
    "warnd_provider_error_reasons": ("counter", "Failed sends and reports by channel, provider and reason "
                                                "(in_doubt, rate_limited, unreachable, refused, undelivered, other)."),
    "warnd_send_latency_seconds": ("gaugehistogram", "Seconds from an outbox row being created (falling due) to "
                                                     "its provider accepting it, by channel and provider; rows "
                                                     "sent in the last 15 minutes."),
    "warnd_calls": ("gauge", "叫应 calls by state."),
    "warnd_calls_overdue": ("gauge", "Open calls past their deadline (the next rung is due)."),
    "warnd_calls_overdue_max_seconds": ("gauge", "How far past its deadline the most overdue open call is."),
    "warnd_calls_by_rung": ("gauge", "Calls by the ladder rung they have reached (0: none fired)."),
    "warnd_escalation_messages": ("gauge", "Escalation messages by rung and state."),
    "warnd_confirmations": ("counter", "Confirmed calls by the way they were confirmed."),
    "warnd_time_to_confirm_seconds": ("gaugehistogram", "Time from call opened to confirmed, calls confirmed "
                                                        "in the last hour."),
    "warnd_speaker_commands": ("gauge", "Loudspeaker commands by state."),
    "warnd_speaker_commands_pending": ("gauge", "Loudspeaker commands not yet accepted by the broker."),
    "warnd_speakers": ("gauge", "Loudspeaker fleet by health (online, offline, stale, never_seen)."),
    "warnd_feed_last_success_age_seconds": ("gauge", "Seconds since a polled feed last answered."),
    "warnd_feed_failures": ("gauge", "Consecutive failed polls of a feed."),
    "warnd_feed_lag_seconds": ("gauge", "Ingested time minus the entry's own time, newest entry of a feed."),
    "warnd_feed_entries_ingested": ("counter", "Entries ingested from a polled feed."),
    "warnd_station_reading_age_seconds": ("gauge", "Seconds since the newest evaluated reading of a station."),
    "warnd_events": ("counter", "Event log rows by kind."),
    "warnd_scrape_seconds": ("gauge", "Time the last metrics snapshot took to collect."),
}


def exported_names() -> set[str]:
    """Every sample name /metrics may carry (for the dashboard/rules consistency test)."""
    out = set()
    for name, (kind, _) in METRIC_NAMES.items():
        if kind == "counter":
            out |= {f"{name}_total", f"{name}_created"}
        elif kind == "gaugehistogram":
            out |= {f"{name}_bucket", f"{name}_gsum", f"{name}_gcount"}
        else:
            out.add(name)
    return out


Family = GaugeMetricFamily | CounterMetricFamily


def _family(name: str, labels: Iterable[str] = ()) -> Family:
    kind, doc = METRIC_NAMES[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


@dataclass(eq=False)  # registered by identity
class Snapshot:
    families: list[Metric]

    def collect(self) -> Iterator[Metric]:  # the prometheus_client Collector protocol
        yield from self.families

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        ProcessCollector(registry=registry)
        return generate_latest(registry)


async def snapshot(db: Database, now: datetime, modules: Mapping[str, ModuleStats], *, county: str,
                   speakers_stale_after: float | None = None) -> Snapshot:
    """Count everything once. `speakers_stale_after`: None when loudspeakers are off."""
    fams: list[Metric] = []
    info = _family("warnd_info", ["county_code"])
    info.add_metric([county], 1)
    fams.append(info)
    fams += _module_families(modules)
    async with db.read() as s:
        deliveries = (await (await s.connection()).execute(sa_select(
            col(Delivery.channel), col(Delivery.purpose), col(Delivery.state), func.count(),
            func.min(Delivery.created_at)).group_by(
            col(Delivery.channel), col(Delivery.purpose), col(Delivery.state)))).all()
        rungs = (await s.exec(select(Delivery.rung, Delivery.state, func.count()).where(
            Delivery.purpose == Purpose.ESCALATION.value).group_by(col(Delivery.rung), col(Delivery.state)))).all()
        errors = (await s.exec(select(Delivery.channel, Event.kind, func.count()).join(
            Delivery, col(Delivery.id) == Event.delivery_id).where(col(Event.kind).in_(PROVIDER_ERRORS)).group_by(
            col(Delivery.channel), col(Event.kind)))).all()
        reason = func.coalesce(col(Event.data)["reason"].as_string(), case(
            *((col(Event.kind) == kind, why) for kind, why in LEGACY_REASON.items()), else_="other"))
        provider = func.coalesce(col(Event.data)["provider"].as_string(), col(Delivery.provider), "unknown")
        reasons = (await (await s.connection()).execute(sa_select(
            col(Delivery.channel), provider, reason, func.count()).join(
            Delivery, col(Delivery.id) == Event.delivery_id).where(col(Event.kind).in_(PROVIDER_ERRORS)).group_by(
            col(Delivery.channel), provider, reason))).all()
        latency = await _send_latency(s, now, sqlite=db.is_sqlite)
        calls = (await s.exec(select(Call.state, func.count()).group_by(col(Call.state)))).all()
        levels = (await s.exec(select(Call.level, func.count()).group_by(col(Call.level)))).all()
        overdue_n, oldest = (await s.exec(select(func.count(), func.min(Call.deadline)).where(
            Call.state == CallState.OPEN.value, col(Call.deadline) < now))).one()
        via = (await s.exec(select(Call.confirmed_via, func.count()).where(
            col(Call.confirmed_at).is_not(None)).group_by(col(Call.confirmed_via)))).all()
        recent = (await s.exec(select(Call.created_at, Call.confirmed_at).where(
            col(Call.confirmed_at) >= now - CONFIRM_WINDOW))).all()
        commands = (await s.exec(select(SpeakerCommand.state, func.count()).group_by(
            col(SpeakerCommand.state)))).all()
        feeds = (await s.exec(select(FeedState))).all()
        stations = (await s.exec(select(StationState.station, StationState.evaluated_at))).all()
        events = (await s.exec(select(Event.kind, func.count()).group_by(col(Event.kind)))).all()

    total, queued, age = (_family("warnd_deliveries", ["channel", "purpose", "state"]),
                          _family("warnd_deliveries_queued", ["channel", "purpose"]),
                          _family("warnd_deliveries_queue_age_seconds", ["channel", "purpose"]))
    waiting: dict[tuple[str, str], tuple[int, datetime | None]] = {}
    for channel, purpose, state, n, first in deliveries:
        total.add_metric([channel, purpose, state], n)
        if state in QUEUED:
            had, since = waiting.get((channel, purpose), (0, None))
            waiting[(channel, purpose)] = (had + n, min(d for d in (since, first) if d is not None))
    for (channel, purpose), (n, since) in sorted(waiting.items()):
        queued.add_metric([channel, purpose], n)
        age.add_metric([channel, purpose], _age(now, since))
    fams += [total, queued, age]

    esc = _family("warnd_escalation_messages", ["rung", "state"])
    for rung, state, n in rungs:
        esc.add_metric([str(rung or 0), state], n)
    err = _family("warnd_provider_errors", ["channel", "kind"])
    for channel, kind, n in errors:
        err.add_metric([channel, kind], n)
    why = _family("warnd_provider_error_reasons", ["channel", "provider", "reason"])
    merged: dict[tuple[str, str, str], int] = {}
    for channel, prov, r, n in reasons:
        key = (channel, prov, r if r in ERROR_REASONS else "other")
        merged[key] = merged.get(key, 0) + n
    for key, n in sorted(merged.items()):
        why.add_metric(list(key), n)
    fams += [esc, err, why, latency]

    by_state = _family("warnd_calls", ["state"])
    have = dict(calls)
    for state in CallState:
        by_state.add_metric([state.value], have.get(state.value, 0))
    overdue = _family("warnd_calls_overdue")
    overdue.add_metric([], overdue_n or 0)
    worst = _family("warnd_calls_overdue_max_seconds")
    worst.add_metric([], _age(now, oldest))
    by_rung = _family("warnd_calls_by_rung", ["rung"])
    for level, n in sorted(levels):
        by_rung.add_metric([str(level)], n)
    confirmed = _family("warnd_confirmations", ["via"])
    for how, n in via:
        confirmed.add_metric([how or "unknown"], n)
    fams += [by_state, overdue, worst, by_rung, confirmed, _time_to_confirm(recent)]

    cmd = _family("warnd_speaker_commands", ["state"])
    counts = dict(commands)
    for state, n in sorted(counts.items()):
        cmd.add_metric([state], n)
    pending = _family("warnd_speaker_commands_pending")
    pending.add_metric([], counts.get("pending", 0))
    fams += [cmd, pending]
    if speakers_stale_after is not None:
        h = await fleet_health(db, now, speakers_stale_after)
        fleet = _family("warnd_speakers", ["health"])
        for label, n in (("online", h.online), ("offline", h.offline), ("stale", h.stale),
                         ("never_seen", h.never_seen)):
            fleet.add_metric([label], n)
        fams.append(fleet)

    success, failures, lag, ingested = (_family("warnd_feed_last_success_age_seconds", ["source"]),
                                        _family("warnd_feed_failures", ["source"]),
                                        _family("warnd_feed_lag_seconds", ["source"]),
                                        _family("warnd_feed_entries_ingested", ["source"]))
    for f in feeds:
        if f.last_success_at is not None:
            success.add_metric([f.source], _age(now, f.last_success_at))
        failures.add_metric([f.source], f.failures)
        if f.last_lag_seconds is not None:
            lag.add_metric([f.source], f.last_lag_seconds)
        ingested.add_metric([f.source], f.entries_ingested)
    station_age = _family("warnd_station_reading_age_seconds", ["station"])
    for station, at in stations:
        if at is not None:
            station_age.add_metric([station], _age(now, at))
    by_kind = _family("warnd_events", ["kind"])
    for kind, n in sorted(events):
        by_kind.add_metric([kind], n)
    fams += [success, failures, lag, ingested, station_age, by_kind]
    return Snapshot(fams)


def _module_families(modules: Mapping[str, ModuleStats]) -> list[Metric]:
    fields = {
        "warnd_module_passes": lambda st: st.passes,
        "warnd_module_steps": lambda st: st.steps,
        "warnd_module_errors": lambda st: st.errors,
        "warnd_module_timeouts": lambda st: st.timeouts,
        "warnd_module_slow_passes": lambda st: st.slow_passes,
        "warnd_module_pass_seconds": lambda st: st.total_pass_seconds,
        "warnd_module_last_pass_seconds": lambda st: st.last_pass_seconds,
        "warnd_module_max_pass_seconds": lambda st: st.max_pass_seconds,
        "warnd_module_lateness_seconds": lambda st: st.last_lateness_seconds,
        "warnd_module_max_lateness_seconds": lambda st: st.max_lateness_seconds,
        "warnd_module_running": lambda st: int(st.running),
        "warnd_module_busy": lambda st: int(st.busy),
    }
    out: list[Metric] = []
    for name, value in fields.items():
        fam = _family(name, ["module"])
        for module, st in sorted(modules.items()):
            fam.add_metric([module], value(st))
        out.append(fam)
    return out


def _time_to_confirm(rows: Iterable[tuple[datetime, datetime | None]]) -> Metric:
    took = sorted(max((c - o).total_seconds(), 0.0) for o, c in rows if c is not None)
    buckets, i = [], 0
    for bound in CONFIRM_BUCKETS:
        while i < len(took) and took[i] <= bound:
            i += 1
        buckets.append((f"{bound:g}", float(i)))
    buckets.append(("+Inf", float(len(took))))
    return GaugeHistogramMetricFamily("warnd_time_to_confirm_seconds",
                                      METRIC_NAMES["warnd_time_to_confirm_seconds"][1],
                                      buckets=buckets, gsum_value=sum(took))


async def _send_latency(s: Any, now: datetime, *, sqlite: bool) -> Metric:
    """Created → sent of the rows the providers accepted within SEND_WINDOW, counted into
    buckets by the database (one row per channel and provider comes back, not one per send)."""
    raw: ColumnElement[Any]
    if sqlite:  # UTC wall times as ISO text
        raw = (func.julianday(col(Delivery.sent_at)) - func.julianday(col(Delivery.created_at))) * 86400.0
    else:
        raw = func.extract("epoch", col(Delivery.sent_at) - col(Delivery.created_at))
    took = cast(case((raw < 0, 0.0), else_=raw), Float)
    provider = func.coalesce(col(Delivery.provider), "unknown")
    rows = (await (await s.connection()).execute(sa_select(
        col(Delivery.channel), provider, func.count(), func.coalesce(func.sum(took), 0.0),
        *(func.sum(case((took <= bound, 1), else_=0)) for bound in SEND_BUCKETS)).where(
        col(Delivery.sent_at).is_not(None), col(Delivery.sent_at) >= now - SEND_WINDOW).group_by(
        col(Delivery.channel), provider).order_by(col(Delivery.channel), provider))).all()
    fam = GaugeHistogramMetricFamily("warnd_send_latency_seconds", METRIC_NAMES["warnd_send_latency_seconds"][1],
                                     labels=["channel", "provider"])
    for channel, prov, n, total, *within in rows:
        buckets = [(f"{bound:g}", float(k or 0)) for bound, k in zip(SEND_BUCKETS, within, strict=True)]
        buckets.append(("+Inf", float(n)))
        fam.add_metric([channel, prov], buckets, float(total))
    return fam


def scrape_timing(seconds: float) -> Metric:
    fam = _family("warnd_scrape_seconds")
    fam.add_metric([], seconds)
    return fam
