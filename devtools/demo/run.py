"""`warnd-dev demo`: a heavy-rain 631 storm over a generated county, end to end, in under a minute.

Everything runs through the real paths: CAP over HTTP into the API, the Tencent Cloud SMS SDK
talking to a local server that speaks Tencent's API, officials answering through Tencent's
uplink callback into our webhook, deadlines and escalations on an accelerated clock.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlmodel import col, func, select

from devtools.demo.board_shot import BoardCamera, board_screenshot, unavailable
from devtools.demo.capgen import NATIONAL_SENDER, cap_xml, gbt_xml
from devtools.demo.channels import ChannelOfficials, demo_policy
from devtools.demo.county import COUNTY_CODE, generate_county
from devtools.demo.loudspeakers import loudspeaker_summary, seed_speakers
from devtools.demo.officials import Officials
from devtools.demo.public_list import import_generated_list
from devtools.demo.speakers import SpeakerFleetProcess, free_port
from devtools.simulators.sl651_station import Sl651Station, TcpLink
from devtools.simulators.tencent_sms_api import TencentSmsApi
from devtools.simulators.twilio_api import TwilioApi
from devtools.simulators.wecom_api import WeComApi
from warnd.api.app import make_app
from warnd.app import App
from warnd.audit import Scope, make_report
from warnd.audit.cli import headline
from warnd.audit.export import write_report
from warnd.clock import ScaledClock
from warnd.config import (
    ApiCfg,
    County,
    DatabaseCfg,
    FeedsCfg,
    MetricsCfg,
    PolicyCfg,
    ServerCfg,
    Settings,
    SmsCfg,
    SpeakersCfg,
    TencentCfg,
    VoiceCfg,
    WeComCfg,
)
from warnd.confirm.feedback import people_moved_by_township
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Person
from warnd.logging import configure_logging
from warnd.public.coverage import public_coverage

STEP_ZH = {"forecast": "预报(6h)", "warning": "预警(3h)", "imminent": "临灾(1h)", "gauge": "雨量站"}
VIA_ZH = {"sms_reply": "短信回复", "wecom": "企业微信", "link": "链接", "voice": "语音按键",
          "duty_officer": "值班员代录"}
IDLE_SPEED = 3000.0  # between a step's ladder running out and the next step
SPEAKERS = 4365  # as many as the seed county (沅陵) has
GAUGE = "YL001"
GAUGE_PREPARE = timedelta(hours=4, minutes=50)
GAUGE_VILLAGES = ["431222101200", "431222101201", "431222101202"]
STORM_END = timedelta(hours=5, minutes=20)  # the red ladder has run out
SHOT_AFTER = timedelta(minutes=6)  # the board photographed mid-ladder: red window over, escalations running
SHOT_WAIT = 90.0  # real seconds the end of the demo waits for a late screenshot
GAUGE_ADDRESS = "0043122201"  # its SL 651 remote station address


def gauge_stations(workdir: Path) -> Path:
    """stations.toml of the demo: one rain gauge speaking SL 651-2014 to the gateway."""
    path = workdir / "stations.toml"
    path.write_text(f"""[stations.{GAUGE}]
name = "马底驿雨量站"
area_desc = "马底驿镇沿溪三村"
villages = {GAUGE_VILLAGES!r}
rain_1h = [30, 50]
max_age_minutes = 60
sl651_address = "{GAUGE_ADDRESS}"
sl651_password = "1234"
""".replace("'", '"'), encoding="utf-8")
    return path
# Public lists (危险区群众, 扫码订阅, 网格员, 游客): the seed county has over 100,000 numbers; the
# demo lists 20,000, scaled to stay under a minute (bench/bench_public.py runs 100,000).
PUBLIC_NUMBERS = 20_000


async def _public_lists(engine: App, workdir: Path, now: datetime, seed: int) -> dict[str, Any]:
    """Generate the county's public lists and import them as an operator would."""
    report, seconds = await import_generated_list(engine.db, workdir / "公众预警接收名单.csv", PUBLIC_NUMBERS,
                                                  now=now, seed=seed)
    return {"listed": report.added, "villages": report.villages, "kinds": dict(report.by_kind),
            "rejected": len(report.rejected), "import_seconds": round(seconds, 1)}


async def _leaders(engine: App) -> tuple[dict[str, str], list[str]]:
    """WeCom userid → phone of everyone on WeCom, and the phones of county and township
    officials (the ones the standard ladder calls by voice)."""
    async with engine.db.read() as s:
        people = (await s.exec(select(Person))).all()
    return ({p.wecom_userid: p.phone for p in people if p.wecom_userid},
            [p.phone for p in people if len(p.region_code) <= 9])


async def _post(session: aiohttp.ClientSession, url: str, token: str, body: bytes) -> dict[str, Any]:
    async with session.post(url, data=body, headers={"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/cap+xml"}) as r:
        data: dict[str, Any] = await r.json(content_type=None)
        if r.status not in (200, 201):
            raise RuntimeError(f"ingest refused: {r.status} {data}")
        return data


async def step_table(engine: App) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with engine.db.read() as s:
        alerts = (await s.exec(select(Alert).where(Alert.msg_type != "Cancel").order_by(col(Alert.id)))).all()
        for a in alerts:
            calls = (await s.exec(select(Call).where(Call.alert_id == a.id))).all()
            sent = dict((await s.exec(select(Delivery.call_id, func.min(Delivery.sent_at)).where(
                Delivery.alert_id == a.id, Delivery.purpose == "warning").group_by(col(Delivery.call_id)))).all())
            confirmed = [c for c in calls if c.state == "confirmed" and c.confirmed_via is not None]
            waits = sorted((c.confirmed_at - (sent.get(c.id) or c.created_at)).total_seconds() / 60
                           for c in confirmed if c.confirmed_at and not (c.note or "").startswith("carried"))
            rows.append({
                "alert_id": a.id, "step": a.step, "colour": a.colour, "state": a.state,
                "called": len(calls),
                "confirmed": len(confirmed),
                "confirmed_in_time": sum(1 for c in confirmed if c.level == 0),
                "escalated": sum(1 for c in calls if c.level > 0),
                "still_silent": sum(1 for c in calls if c.state in ("open", "duty_room")),
                "superseded_open": sum(1 for c in calls if c.state == "cancelled"),
                "median_minutes_to_confirm": round(statistics.median(waits), 1) if waits else None,
                "confirmed_via": dict(Counter(c.confirmed_via for c in confirmed)),
            })
    return rows


async def _progress(engine: App, clock: ScaledClock, t0: datetime, stage: list[str]) -> None:
    while True:
        async with engine.db.read() as s:
            sent = (await s.exec(select(func.count()).select_from(Delivery).where(
                col(Delivery.state).in_(["sent", "delivered"])))).one()
            states = dict((await s.exec(select(Call.state, func.count()).group_by(col(Call.state)))).all())
        elapsed = engine.clock.now() - t0
        hh, mm = divmod(int(elapsed.total_seconds() // 60), 60)
        line = (f"\r[T+{hh:02d}:{mm:02d} ×{clock.speed:g}] {stage[0]:<10} 短信已发 {sent:>5}  已确认 {states.get('confirmed', 0):>5}"
                f"  待确认 {states.get('open', 0):>5}  转值班室 {states.get('duty_room', 0):>4}")
        print(line, end="", file=sys.stderr, flush=True)
        await asyncio.sleep(0.5)  # display refresh only; nothing waits on it


async def run_demo(out: Path, speed: float = 960.0, seed: int = 631, busy_speed: float = 60.0, *,
                   database: str | None = None, broker: str | None = None, mqtt_username: str = "",
                   board_shot: bool | None = None) -> int:
    """`speed` runs the quiet hours; from the rain gauge's first crossing on (T+4:50) the clock
    slows to `busy_speed` so that 3,000+ messages, replies and escalations fit on one core in
    real time while the 5-minute red confirm window is still minutes long.

    `board_shot`: photograph the imminent warning's 叫应 board mid-storm into `out/board.png`
    (devtools/demo/board_shot.py). None: when chromium and playwright are here, else one line
    says why not; True: insist (exit 2 before the storm when they are missing); False: never."""
    configure_logging(level=30)
    no_shot = unavailable() if board_shot is not False else "not asked (--no-board-screenshot)"
    if board_shot and no_shot:
        print(f"warnd-dev demo: --board-screenshot: {no_shot}", file=sys.stderr)
        return 2
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (start-up, nothing else runs yet)
    workdir = Path(tempfile.mkdtemp(prefix="warnd-demo-"))
    clock = ScaledClock(speed)
    sim = TencentSmsApi()
    sim.callback_concurrency = 1000  # thousands of handsets answer within the same minutes
    twilio, wecom = TwilioApi(), WeComApi()
    for server in (sim, twilio, wecom):
        await server.start()
    speakers = (SpeakerFleetProcess.external(broker) if broker else await SpeakerFleetProcess.start_broker(workdir))
    token, cb_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    metrics_token = secrets.token_urlsafe(16)  # Prometheus can watch the storm (printed below)
    port = free_port()  # links and voice callbacks carry the public URL: fixed before the build
    gauge_port = free_port()  # the SL 651 gateway the rain gauge reports to
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        county=County(code=COUNTY_CODE, name="沅陵县", sender_name="沅陵县防汛抗旱指挥部"),
        database=DatabaseCfg(url=database or f"sqlite:///{workdir / 'warnd.db'}", durable=database is not None),
        server=ServerCfg(host="127.0.0.1", port=port, public_base_url=base),
        api=ApiCfg(tokens=(token,)),
        metrics=MetricsCfg(tokens=(metrics_token,)),
        policy=PolicyCfg(path=str(demo_policy(workdir))),
        feeds=FeedsCfg(stations=str(gauge_stations(workdir)), sl651_tcp=f"127.0.0.1:{gauge_port}"),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://", 1)[1],
            callback_token=cb_token)),
        voice=VoiceCfg(provider="twilio", account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                       from_number="+15005550006", api_base_url=twilio.base_url),
        # The local WeCom server has no per-app quota; a real corp app is paced lower.
        wecom=WeComCfg(enabled=True, corp_id=wecom.corp_id, corp_secret=wecom.corp_secret,
                       agent_id=wecom.agent_id, token=wecom.token, encoding_aes_key=wecom.encoding_aes_key,
                       api_base_url=wecom.base_url, max_per_second=500),
        # Heartbeats run in real time while the demo clock races: judge speakers by their
        # last-will state, not by heartbeat age.
        speakers=SpeakersCfg(enabled=True, host=speakers.host, port=speakers.port, username=mqtt_username,
                             ack_window_seconds=900,
                             stale_after_seconds=10**7),
    )
    engine = App.build(settings, clock=clock)
    await engine.start()
    county = await generate_county(engine.db, clock.now(), seed)
    county["speakers"] = len(await seed_speakers(engine.db, total=SPEAKERS, now=clock.now()))
    public_lists = await _public_lists(engine, workdir, clock.now(), seed)
    await speakers.start_fleet(settings.database.url, seed)  # connects while the quiet hours run
    assert engine.feeds is not None
    rain_gauge = Sl651Station(GAUGE_ADDRESS, "1234", mode="ascii")
    gauge_at = datetime.min.replace(tzinfo=UTC)  # the gauge's last observation time
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"warnd-dev demo: {county['townships']} townships, {county['villages']} villages, "
          f"{county['officials']} officials; clock ×{speed:g}, ×{busy_speed:g} from the gauge's first crossing; "
          f"database {settings.database.url.split('@')[-1]}", file=sys.stderr)
    print(f"metrics while it runs: curl -H 'Authorization: Bearer {metrics_token}' {base}/metrics", file=sys.stderr)
    userids, leader_phones = await _leaders(engine)
    channel_officials = ChannelOfficials(wecom, twilio, clock, random.Random(seed + 1))
    not_by_sms = channel_officials.assign(userids, leader_phones, f"{base}/webhooks/wecom/callback")
    officials = Officials(sim, clock, f"{base}/webhooks/tencent/sms/{cb_token}/reply", random.Random(seed),
                          skip=not_by_sms)
    sim.status_callback_url = f"{base}/webhooks/tencent/sms/{cb_token}/status"  # carriers' 状态报告 come back
    shot: asyncio.Task[Path] | None = None
    imminent: asyncio.Future[tuple[int, datetime]] = asyncio.get_running_loop().create_future()
    camera: BoardCamera | None = None
    if no_shot is None:
        camera = BoardCamera(base, secrets.token_urlsafe(16))
        await BoardCamera.add_officer(engine.db, camera.password)
    stage = ["预报"]
    tasks = [asyncio.create_task(officials.watch()), asyncio.create_task(channel_officials.watch_links()),
             asyncio.create_task(_progress(engine, clock, clock.now(), stage))]
    t0 = clock.now()
    onset = t0 + timedelta(hours=6)
    county_area = [f"{COUNTY_CODE}000000"]
    plan = [
        (timedelta(0), "forecast", cap_xml("431222-RS-001", t0, onset, "黄色",
                                           "未来6小时沅陵县将出现暴雨", "请县防指成员和包乡领导做好部署。", county_area,
                                           step="forecast", sender=NATIONAL_SENDER)),
        (timedelta(hours=1), "idle", None),
        (timedelta(hours=3), "warning", None),
        (timedelta(hours=3, minutes=50), "idle", None),
        (GAUGE_PREPARE, "gauge", None),
        (GAUGE_PREPARE + timedelta(minutes=5), "gauge", None),
        (timedelta(hours=5), "imminent", None),
    ]
    ingested: list[dict[str, Any]] = []
    gauge: list[int] = []
    async with aiohttp.ClientSession() as http:
        for offset, step, body in plan:
            await clock.wait_until(t0 + offset)
            if step == "idle":  # the step's ladder has run out: nothing happens until the next
                clock.set_speed(IDLE_SPEED)
                if camera is not None and shot is None:  # the browser starts and logs in while nothing happens
                    shot = asyncio.create_task(board_screenshot(camera, clock, imminent, out / "board.png"))
                continue
            clock.set_speed(speed if offset < GAUGE_PREPARE else busy_speed)
            stage[0] = STEP_ZH[step]
            if offset == GAUGE_PREPARE:  # the busy hour starts: the speakers must be up
                print("\n" + await speakers.wait_ready(), file=sys.stderr)
            if step == "gauge":
                # The rain gauge above three villages crosses 准备转移, then 立即转移: warnd raises
                # the 山洪 warnings itself, for exactly those villages. The gauge speaks SL 651-2014
                # (ASCII mode) over TCP to the gateway, and waits for each confirmation.
                now = clock.now()
                mm = [8, 12, 14] if offset == GAUGE_PREPARE else [18, 22, 24]
                link = await TcpLink.open("127.0.0.1", gauge_port)
                try:
                    for i, v in enumerate(mm):
                        # A station observes in time order, whatever the demo's schedule did.
                        gauge_at = max(now - timedelta(minutes=20 - 10 * i), gauge_at + timedelta(minutes=1))
                        await link.report(rain_gauge.report(gauge_at, rain_mm=v))
                finally:
                    await link.close()
                assert engine.feeds.sl651 is not None
                await engine.feeds.sl651.settle()  # each frame was confirmed at once; now the warning is raised
                continue
            now = clock.now()
            if step == "warning":
                # Through the national release system: GB/T 35965.1, referencing the chain's FIRST message.
                # GB/T states no 631 step: the lead time says it (3 h before onset → 预警).
                body = gbt_xml("431222-RS-002", now, max(onset, now + timedelta(hours=3)), "橙色", "3小时内沅陵县将出现大暴雨",
                               "请乡镇做好转移准备。", county_area, msg_type="Update", first="431222-RS-001")
            elif step == "imminent":
                body = cap_xml("431222-RS-003", now, onset, "红色", "1小时内沅陵县将出现特大暴雨，山洪风险极高",
                               "请立即组织危险区群众转移，鸣锣吹哨，敲门入户。", county_area, msg_type="Update",
                               references=[("431222-RS-002", t0 + timedelta(hours=3))], step="imminent",
                               sender=NATIONAL_SENDER)
            assert body is not None
            ingested.append(await _post(http, f"{base}/api/v1/alerts", token, body))
            if step == "imminent" and not imminent.done():  # mid-ladder (before the storm's end when on time)
                imminent.set_result((int(ingested[-1]["id"]), now + SHOT_AFTER))
            # A duplicate push (feeds retry): must be recognised, nothing sent twice.
            again = await _post(http, f"{base}/api/v1/alerts", token, body)
            assert not again["created"]
        await clock.wait_until(t0 + STORM_END)  # the red ladder runs out
    assert engine.feeds.sl651 is not None
    await engine.feeds.sl651.settle()
    async with engine.db.read() as s:
        gauge.extend(a for a in (await s.exec(select(Alert.id).where(
            Alert.source == f"telemetry:{GAUGE}"))).all() if a is not None)
    shot_path, shot_note = await _board_shot_result(shot, no_shot)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(file=sys.stderr)
    table = await step_table(engine)
    imminent_id = int(ingested[-1]["id"])
    public = {**public_lists, "imminent": await public_coverage(engine.db, imminent_id,
                                                                 settings.public.coverage_target)}
    if public["imminent"] is not None:
        public["imminent"].pop("villages")  # per village: in the audit report
    moved = await people_moved_by_township(engine.db)
    loudspeakers = await loudspeaker_summary(engine.db, now=clock.now(), stale_after_seconds=10**7)
    dupes = [k for k, n in Counter((m.to, m.context) for m in sim.messages).items() if n > 1]
    summary: dict[str, Any] = {
        "county": county, "clock_speed": speed, "busy_clock_speed": busy_speed, "wall_seconds": round(time.monotonic() - started, 1),
        "steps": table, "ingest": ingested,
        "sms": {"accepted_by_provider": len(sim.messages), "duplicate_sends": len(dupes),
                "replies_from_officials": officials.replies},
        "wecom_cards": len(wecom.messages), "voice_calls": len(twilio.calls),
        "feedback_reports": channel_officials.feedback_sent, "people_moved_by_township": moved,
        "gauge_alerts": sorted(set(gauge)), "loudspeakers": loudspeakers, "public": public,
        "board_screenshot": str(shot_path) if shot_path else None,
    }
    await officials.stop()
    await channel_officials.stop()
    await runner.cleanup()
    await engine.stop()
    for server in (sim, twilio, wecom):
        await server.stop()
    await speakers.stop()
    # The audit report of the whole storm, as an auditor pulls it afterwards: from the event log
    # once everything in flight has landed.
    audit_started = time.monotonic()
    db = Database(settings.database.url)
    try:
        report = await make_report(db, Scope(start=t0 - timedelta(minutes=1), end=clock.now() + timedelta(seconds=1)),
                                   now=clock.now())
    finally:
        await db.close()
    reports = write_report(report, out, ["html", "xlsx"])
    summary["audit"] = {"headline": headline(report), "seconds": round(time.monotonic() - audit_started, 1),
                        **{fmt: str(p) for fmt, p in reports.items()}}
    (out / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print_table(table, summary)
    print(f"审计报告 audit: {headline(report)} ({summary['audit']['seconds']} s)")
    print(f"audit report (HTML): {reports['html']}")
    print(f"audit report (XLSX): {reports['xlsx']}")
    print(f"board screenshot (叫应看板): {shot_path}" if shot_path else f"board screenshot skipped: {shot_note}")
    print(f"summary written to {out / 'summary.json'}")
    return 0 if not dupes else 1


async def _board_shot_result(shot: asyncio.Task[Path] | None, why_not: str | None) -> tuple[Path | None, str]:
    """The screenshot's path, or why there is none (it never fails the demo)."""
    if shot is None:
        return None, why_not or "not taken"
    try:
        return await asyncio.wait_for(shot, SHOT_WAIT), ""
    except TimeoutError:
        return None, f"the browser took longer than {SHOT_WAIT:g} s"
    except Exception as e:  # a browser that would not start or a page that would not load: say so, go on
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def print_table(table: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    head = f"{'步骤 step':<14}{'颜色':<8}{'应叫':>6}{'已应':>6}{'按时':>6}{'升级':>6}{'仍未应':>7}{'中位(分)':>10}"
    print(head)
    print("-" * len(head))
    for r in table:
        med = "-" if r["median_minutes_to_confirm"] is None else f"{r['median_minutes_to_confirm']:.1f}"
        print(f"{STEP_ZH.get(r['step'], r['step']):<14}{r['colour']:<8}{r['called']:>6}{r['confirmed']:>6}"
              f"{r['confirmed_in_time']:>6}{r['escalated']:>6}{r['still_silent']:>7}{med:>10}")
    sms = summary["sms"]
    via = Counter[str]()
    for r in table:
        via.update(r["confirmed_via"])
    print("确认方式 confirmed via: " + "、".join(f"{VIA_ZH.get(k, k)} {n}" for k, n in via.most_common()))
    moved = summary["people_moved_by_township"]
    if moved:
        top = sorted(moved, key=lambda m: -m["people_moved"])[:5]
        print(f"反馈 feedback: {summary['feedback_reports']} reports; people moved "
              f"{sum(m['people_moved'] for m in moved)}: " + "、".join(f"{m['name']} {m['people_moved']}" for m in top))
    for step, cov in summary["loudspeakers"]["steps"].items():
        print(f"村村响 loudspeakers ({STEP_ZH.get(step, step)}): {cov['villages_reached']}/{cov['villages']} villages "
              f"reached, {cov['played']} played, {cov['failed']} failed, {cov['no_ack']} silent, "
              f"{cov['fallback_calls']} fallback calls (鸣锣吹哨/敲门入户), {cov['fallback_confirmed']} confirmed")
    pub = summary.get("public") or {}
    imm = pub.get("imminent")
    if imm:
        cov = "-" if imm["coverage"] is None else f"{imm['coverage']:.1%}"
        print(f"公众短信 public (临灾): {pub['listed']} listed in {pub['villages']} villages "
              f"(imported in {pub['import_seconds']} s); targeted {imm['targeted']}, 人次 {imm['accepted']}, "
              f"delivered {imm['delivered']}, opted out {imm['opted_out']}, over budget {imm['over_budget']}; "
              f"coverage {cov} (target {imm['coverage_target']:.0%})")
    fleet = summary["loudspeakers"].get("fleet")
    if fleet:
        print(f"fleet: {fleet['total']} speakers, {fleet['online']} online, {fleet['offline']} offline")
    print(f"SMS accepted by provider: {sms['accepted_by_provider']}, duplicates: {sms['duplicate_sends']}, "
          f"replies: {sms['replies_from_officials']}; WeCom cards: {summary['wecom_cards']}; "
          f"voice calls: {summary['voice_calls']}; wall time {summary['wall_seconds']} s")
