"""GET /metrics on a real App (SQLite and PostgreSQL): what a storm does shows in the figures an
operator watches, only a scraper's token or an admin/auditor may read them, and every metric
the Grafana dashboard and the Prometheus alert rules in deploy/ name is exported."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.channel_stack import AUTH, METRICS_TOKEN, Stack, imminent
from support.users import bearer, token_for
from warnd.views.metrics import METRIC_NAMES, exported_names, snapshot

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "warnd-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "warnd-dashboard.json"
METRIC_RE = re.compile(r"\b((?:warnd|process)_[a-z_]+)\b")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(st: Stack, headers: dict[str, str] | None = None) -> tuple[Samples, set[str]]:
    r = await st.http.get("/metrics", headers=headers if headers is not None else bearer(METRICS_TOKEN))
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    names: set[str] = set()
    for fam in text_string_to_metric_families(await r.text()):
        names.add(fam.name)
        for s in fam.samples:
            names.add(s.name)
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, names


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_warning_shows_in_the_queues_calls_events_and_module_timing(st: Stack) -> None:
    before, _ = await scrape(st)
    assert value(before, "warnd_calls", state="open") == 0
    assert value(before, "warnd_info", county_code="431222") == 1

    body = await st.post_cap(imminent("MET-1"))
    await st.engine.runner.settle()
    after, _ = await scrape(st)
    called = len([c for c in (await st.calls(body["id"])).values() if c["state"] == "open"])
    assert called >= 4
    assert value(after, "warnd_calls", state="open") == called
    assert value(after, "warnd_events_total", kind="alert_accepted") == 1
    sent = value(after, "warnd_deliveries", channel="sms", purpose="warning", state="sent")
    assert sent == called
    assert value(after, "warnd_deliveries_queued", channel="sms", purpose="warning") == 0
    assert value(after, "warnd_module_passes_total", module="outbox") > value(
        before, "warnd_module_passes_total", module="outbox")
    assert value(after, "warnd_module_steps_total", module="outbox") >= 1
    assert value(after, "warnd_module_running", module="escalation") == 1
    assert value(after, "warnd_calls_overdue") == 0
    assert value(after, "process_resident_memory_bytes") > 0


async def test_overdue_calls_and_how_late_they_are(st: Stack) -> None:
    body = await st.post_cap(imminent("MET-2"))
    await st.engine.runner.settle()
    open_calls = [c for c in (await st.calls(body["id"])).values() if c["state"] == "open"]
    # Seen from an hour on (without letting the engine run): every open call is overdue.
    later = st.clock.now() + timedelta(hours=1)
    snap = await snapshot(st.engine.db, later, st.engine.runner.stats, county="431222")
    flat = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in snap.families for s in f.samples}
    assert flat[("warnd_calls_overdue", ())] == len(open_calls)
    worst = flat[("warnd_calls_overdue_max_seconds", ())]
    assert 0 < worst <= 3600


async def test_provider_errors_and_confirmations_are_counted(st: Stack) -> None:
    st.twilio.fail_next(1, 500)  # a 500 after the request was written: in doubt, looked up before any resend
    st.twilio.fail_next(1, 429)  # a definite refusal for now: retried
    body = await st.post_cap(imminent("MET-3"))
    await st.engine.runner.settle()
    samples, _ = await scrape(st)
    assert value(samples, "warnd_provider_errors_total", channel="sms", kind="delivery_in_doubt") >= 1
    assert value(samples, "warnd_provider_errors_total", channel="sms", kind="delivery_retry") >= 1

    call = next(c for c in (await st.calls(body["id"])).values() if c["state"] == "open")
    r = await st.http.post(f"/api/v1/calls/{call['id']}/ack", json={"note": "电话联系本人"}, headers=st.officer)
    assert r.status == 200
    samples, _ = await scrape(st)
    assert value(samples, "warnd_confirmations_total", via="duty_officer") == 1
    assert value(samples, "warnd_time_to_confirm_seconds_bucket", le="+Inf") == 1


def sent_rows(samples: Samples, channel: str) -> float:
    """Rows of a channel the provider accepted (sent, or delivered since)."""
    return sum(v for (name, labels), v in samples.items() if name == "warnd_deliveries"
               and dict(labels)["channel"] == channel and dict(labels)["state"] in ("sent", "delivered"))


async def test_send_latency_per_channel_and_provider(st: Stack) -> None:
    # One send refused for now with Retry-After 40 s: it reaches Twilio when the clock has
    # moved on; every other row goes out in the pass that follows its creation.
    st.twilio.fail_next(1, 429, retry_after=40)
    await st.post_cap(imminent("MET-5"))
    await st.engine.runner.settle()
    first, _ = await scrape(st)
    n = sent_rows(first, "sms")
    assert n >= 3  # four officials called, one of them refused for now
    bucket = {"channel": "sms", "provider": "twilio"}
    assert value(first, "warnd_send_latency_seconds_bucket", le="+Inf", **bucket) == n
    assert value(first, "warnd_send_latency_seconds_bucket", le="1", **bucket) == n
    assert value(first, "warnd_send_latency_seconds_gcount", **bucket) == n

    await st.clock.advance(timedelta(seconds=45))
    await st.engine.runner.settle()
    later, _ = await scrape(st)
    assert sent_rows(later, "sms") == n + 1
    assert value(later, "warnd_send_latency_seconds_bucket", le="30", **bucket) == n
    assert value(later, "warnd_send_latency_seconds_bucket", le="60", **bucket) == n + 1
    assert value(later, "warnd_send_latency_seconds_bucket", le="+Inf", **bucket) == n + 1
    assert 40 <= value(later, "warnd_send_latency_seconds_gsum", **bucket) <= 45
    assert value(later, "warnd_provider_error_reasons_total", reason="rate_limited", **bucket) == 1

    # Only recent sends count: a quarter of an hour on, the histogram has nothing of them.
    snap = await snapshot(st.engine.db, st.clock.now() + timedelta(minutes=16), st.engine.runner.stats,
                          county="431222")
    [fam] = [f for f in snap.families if f.name == "warnd_send_latency_seconds"]
    assert fam.samples == []


async def test_provider_errors_by_reason(st: Stack) -> None:
    st.twilio.fail_next(1, 500)  # after the request was written: in doubt, looked up before any resend
    st.twilio.fail_next(1, 429)  # the provider's rate limit: retried later
    st.twilio.fail_next(1, 400)  # refused for good (a bad number, say): failed
    await st.post_cap(imminent("MET-6"))
    await st.engine.runner.settle()
    samples, _ = await scrape(st)
    got = {dict(labels)["reason"]: v for (name, labels), v in samples.items()
           if name == "warnd_provider_error_reasons_total"}
    assert got == {"in_doubt": 1, "rate_limited": 1, "refused": 1}
    for reason in got:
        assert value(samples, "warnd_provider_error_reasons_total", channel="sms", provider="twilio",
                     reason=reason) == 1
    # The per-kind family still counts the same failures.
    assert value(samples, "warnd_provider_errors_total", channel="sms", kind="delivery_in_doubt") == 1
    assert value(samples, "warnd_provider_errors_total", channel="sms", kind="delivery_retry") == 1
    assert value(samples, "warnd_provider_errors_total", channel="sms", kind="delivery_failed") == 1


async def test_only_a_scraper_token_an_admin_or_an_auditor_reads_metrics(st: Stack) -> None:
    anonymous = await st.http.get("/metrics")
    assert anonymous.status == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    for headers in (AUTH, st.officer, bearer("wrong-token")):
        r = await st.http.get("/metrics", headers=headers)
        assert r.status in (401, 403), headers
        assert "warnd_calls" not in await r.text()
    for role in ("admin", "auditor"):
        samples, _ = await scrape(st, bearer(await token_for(st.engine.db, f"m-{role}", role)))
        assert value(samples, "warnd_info", county_code="431222") == 1
    # The scraper token does nothing else.
    r = await st.http.get("/api/v1/feeds", headers=bearer(METRICS_TOKEN))
    assert r.status == 403


def referenced_metrics() -> dict[str, set[str]]:
    """Metric names in every PromQL expression of the alert rules and the dashboard."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    exprs = {f"rule {r['alert']}": r["expr"] for g in rules["groups"] for r in g["rules"]}
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            exprs[f"panel {panel['title']!r}"] = t["expr"]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"] if isinstance(var["query"], str) else var["query"].get("query", "")
            exprs[f"variable {var['name']}"] = q
    return {where: set(METRIC_RE.findall(expr)) for where, expr in exprs.items()}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_every_metric_the_dashboard_and_alert_rules_use_is_exported(st: Stack) -> None:
    # A storm first, so that families with labels (errors, queues, events) carry samples.
    st.twilio.fail_next(1, 500)
    await st.post_cap(imminent("MET-4"))
    await st.engine.runner.settle()
    _, names = await scrape(st)
    refs = referenced_metrics()
    alerts = {w for w in refs if w.startswith("rule ")}
    assert {"rule WarndProviderFailing", "rule WarndDeadlineLate", "rule WarndSourceStale"} <= alerts
    missing = {where: sorted(found - names - exported_names()) for where, found in refs.items()}
    assert {w: m for w, m in missing.items() if m} == {}
    assert all(found for found in refs.values()), "an expression names no metric"
    # And the declared list is what /metrics serves (nothing declared that is never exported).
    families = {n for n in names if n.startswith("warnd_")}
    assert {n for n in METRIC_NAMES if n not in ("warnd_speakers",)} <= families | {
        n.removesuffix("_total") for n in families}
