"""The outbox module: hands due deliveries to their channels.

Deliveries are rows written by the decision that needs them (warnd.engine.deliveries owns
their transitions). Each pass claims due rows (compare-and-swap pending → sending, stamped
with this sender's claim token and a lease), sends them — identical texts on a batch-capable
channel as provider batches — and records each outcome.

No official gets the same message twice because of a retry:
- the idempotency key is unique in the table, so a message is planned once;
- a row is claimed by one sender only (CAS on its state), and only the holder of its claim
  token may record its outcome;
- a send without a definite answer (a timeout, a reset connection, a 5xx after the request
  was written: InDoubtSendError) stays in `sending`, *in doubt*, and is looked up before
  anything else happens to it; so is a row found in `sending` after its lease ran out (a
  crashed or hung sender): this sender takes it over, asks the provider whether it already
  accepted it (Channel.find_sent) and only sends it again if not. A channel that cannot be
  asked (`lookup = "none"`) leaves it to [delivery] in_doubt_without_lookup;
- leases are longer than the longest provider timeout (checked when the outbox is built), and
  a claimed send is started only while enough of its lease is left, so no other sender can
  take over a send still in flight.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import case
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import (
    Channel,
    InDoubtSendError,
    OutboundMessage,
    PermanentSendError,
    SendReceipt,
    TransientSendError,
    error_reason,
)
from warnd.clock import Clock, speed_of, utcnow
from warnd.config import DeliveryCfg
from warnd.config.errors import StartupError
from warnd.core.domain import AlertState, CallState, DeliveryState, Purpose
from warnd.core.retries import STEP_RANK, AfterFailure, RetryFacts, after_failure, backoff_seconds
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Event, Person
from warnd.engine import deliveries, events
from warnd.engine.module import ModuleBase
from warnd.engine.notices import notify_duty_room
from warnd.engine.reports import apply_parked_reports
from warnd.engine.roster import RosterCache, RosterSnapshot

log = structlog.get_logger("warnd.outbox")

AfterSent = Callable[[AsyncSession, list[Delivery], datetime], Awaitable[None]]

DEFAULT_SEND_TIMEOUT = 15.0


class NotStarted(Exception):
    """A claimed send not started: too little of its lease was left when its turn came."""


def send_timeout_of(channel: Channel | None) -> float:
    return float(getattr(channel, "send_timeout", DEFAULT_SEND_TIMEOUT)) if channel is not None else 0.0


def lease_seconds(cfg: DeliveryCfg, channels: Mapping[str, Channel], clock: Clock) -> float:
    """How long (clock seconds) a claimed send is held before another sender may look it up:
    longer than the longest provider timeout by construction. `lease_seconds = 0` is
    automatic (twice the longest timeout plus the margin); a configured lease shorter than
    the timeout plus the margin is refused with a StartupError."""
    speed, margin = speed_of(clock), cfg.lease_margin_seconds
    name, longest = max(((n, send_timeout_of(c)) for n, c in channels.items()), key=lambda x: x[1],
                        default=("", DEFAULT_SEND_TIMEOUT))
    if not cfg.lease_seconds:
        return speed * (2 * longest + margin)
    minimum = speed * (longest + margin)
    if cfg.lease_seconds < minimum:
        at = f" at clock speed x{speed:g}" if speed != 1 else ""
        raise StartupError(
            f"delivery.lease_seconds = {cfg.lease_seconds:g} is shorter than the {name or 'provider'} timeout "
            f"({longest:g} s) plus {margin:g} s{at}: another sender could look up a send still "
            f"in flight; set it to at least {math.ceil(minimum)}, or 0 (automatic)")
    return float(cfg.lease_seconds)


def message_of(d: Delivery, context: str | None = None) -> OutboundMessage:
    """The message as the provider sees it; `context` is what was sent as its identity."""
    return OutboundMessage(idempotency_key=context or d.send_context or d.idempotency_key,
                           to=d.to_address, body=d.body, created_at=d.created_at)


URGENCY = case((col(Delivery.purpose) == Purpose.DUTY_NOTICE.value, 0),
               *((col(Delivery.step) == step, rank) for step, rank in STEP_RANK.items()), else_=len(STEP_RANK))
PHONE_CHANNELS = ("sms", "voice")
CHUNK = 1000  # messages claimed (and recorded) per transaction within a pass


def _phone_channel(name: str) -> bool:
    return name.split("_", 1)[0] in PHONE_CHANNELS


def _definite_transient(outcome: object) -> bool:
    """The provider definitely did not take it, and may later: retry (or fail over)."""
    return isinstance(outcome, TransientSendError) and not isinstance(outcome, InDoubtSendError)


async def _address_of(s: AsyncSession, person_id: int, channel: str) -> str:
    p = await s.get(Person, person_id)
    if p is None:
        return ""
    if channel == "wecom":
        return p.wecom_userid or ""
    if channel == "voice":
        return p.phone or p.phone2 or ""
    return p.phone or ""


async def _last_provider_event(s: AsyncSession, channel: str) -> str | None:
    rows = (await s.exec(select(Event.kind, Event.data).where(
        col(Event.kind).in_(["provider_failing", "provider_recovered"])).order_by(col(Event.id).desc()).limit(50))).all()
    for kind, data in rows:
        if (data or {}).get("for_channel", (data or {}).get("channel")) == channel:
            return str(kind)
    return None


@dataclass
class ChannelHealth:
    failing_since: datetime | None = None  # every send of a pass failed, none since went through
    last_ok: datetime | None = None
    last_error: str = ""
    checked: bool = False  # this process has seen the channel's state


class Pacer:
    """At most `rate` requests a second to one provider (None: no limit), in real time."""

    def __init__(self, rate: float | None, monotonic: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate else 0.0
        self.monotonic = monotonic
        self._next = 0.0

    def reserve(self) -> float:
        """Seconds to wait before the next request may start (and that slot is taken)."""
        if not self.interval:
            return 0.0
        now = self.monotonic()
        slot = max(self._next, now)
        self._next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing in real time: the provider's limit is real


class Outbox(ModuleBase):
    name = "outbox"
    poll_seconds = 5.0  # rows written by another process or instance send no wake

    def __init__(self, db: Database, clock: Clock, channels: Mapping[str, Channel], cfg: DeliveryCfg, *,
                 after_sent: AfterSent | None = None, on_change: Callable[[], None] = lambda: None,
                 single_instance: bool = False, roster: RosterCache | None = None,
                 templates: Templates | None = None, failover: Mapping[str, str] | None = None,
                 purposes: frozenset[Purpose] | None = None, exclude_purposes: frozenset[Purpose] = frozenset(),
                 name: str | None = None):
        """`roster` and `templates`: to tell the duty room when a provider fails and recovers.
        `failover`: channel → the channel a message failing on it moves to after
        [delivery] failover_after_seconds (a second SMS provider, the policy's next channel)."""
        super().__init__()
        # Which rows this sender owns: public traffic has its own outbox (warnd.public), so
        # officials' 叫应 messages never queue behind a mass fan-out.
        self.purposes, self.exclude_purposes = purposes, exclude_purposes
        if name is not None:
            self.name = name
        self.db, self.clock, self.channels, self.cfg = db, clock, channels, cfg
        self.roster, self.templates = roster, templates
        self.failover = {k: v for k, v in (failover or {}).items() if v in channels and v != k}
        self.health = {name: ChannelHealth() for name in channels}
        self._pacers = {name: Pacer(c.rate_per_second) for name, c in channels.items()}
        self.after_sent = after_sent  # runs in the transaction that records the sends
        # Sends move confirm deadlines (the window restarts at send): the escalation module
        # may be sleeping until an older, later deadline and must look again.
        self.on_change = on_change
        self.single_instance = single_instance  # SQLite: at start-up every `sending` row is ours to resolve
        self.token = uuid.uuid4().hex  # this sender's claim token
        self.recorded = 0  # sends recorded since start; `wait_recorded` lets tests wait on it
        self._recorded_cond = asyncio.Condition()
        self._last_to: dict[str, datetime] = {}  # per-recipient spacing (this process)
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.speed = speed_of(clock)
        self.lease = timedelta(seconds=lease_seconds(cfg, channels, clock))

    # -- the module contract ---------------------------------------------------------------

    async def start(self) -> None:
        await self.recover_in_doubt(everything=self.single_instance)

    async def step(self) -> bool:
        return bool(await self.pass_once() or await self.recover_in_doubt(everything=False))

    async def next_due(self) -> datetime | None:
        """The next pending send, or the next lease to run out: rows a crashed sender left in
        `sending` must be reconciled when their lease ends, not whenever new work comes."""
        async with self.db.read() as s:
            pending = (await s.exec(self._mine(select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == DeliveryState.PENDING)))).first()
            lease = (await s.exec(self._mine(select(func.min(Delivery.lease_until)).where(
                Delivery.state == DeliveryState.SENDING)))).first()
        return min((t for t in (pending, lease) if t is not None), default=None)

    # -- sending ---------------------------------------------------------------------------

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        return timedelta(seconds=backoff_seconds(attempts, self.cfg.backoff_seconds, self.cfg.backoff_max_seconds,
                                                 retry_after))

    async def pass_once(self, batch: int = 5000) -> int:
        """Claim and send up to `batch` due deliveries. Returns how many were due.

        The pass works in chunks of CHUNK messages, pipelined: a chunk is read and claimed (one
        transaction) and its sends start; the next chunk is read and claimed while they are in
        flight (claimed rows are no longer pending, so each read finds the next most urgent);
        each chunk's outcomes are recorded (one transaction) as soon as its sends end. The
        first SMS of a county-wide step leaves after one chunk's read and claim, and the
        step's database work overlaps its provider round trips."""
        now = self.clock.now()
        lease = now + self.lease
        min_gap = timedelta(seconds=self.cfg.recipient_min_interval_seconds)
        work: list[asyncio.Task[int]] = []
        total = 0
        try:
            while total < batch:
                size = min(CHUNK, batch - total)
                async with self.db.read() as s:
                    # A backlog (after an outage) goes out most urgent first: imminent warnings
                    # (and the duty room's notices), then warnings, forecasts, the rest.
                    due = (await s.exec(self._mine(select(Delivery).where(
                        Delivery.state == DeliveryState.PENDING, col(Delivery.next_attempt_at) <= now)).order_by(
                        URGENCY, col(Delivery.next_attempt_at), col(Delivery.id)).limit(size))).all()
                total += len(due)
                ready: list[Delivery] = []
                held: list[tuple[int, datetime]] = []  # one person is not flooded across warnings
                for d in due:
                    if self._spacing_ok(d, now, min_gap):
                        ready.append(d)
                    else:
                        held.append((d.id or 0, self._last_to[d.to_address] + min_gap))
                if held:
                    async with self.db.session() as s, s.begin():
                        await deliveries.defer(s, held)
                claimed = await self._claim(self._group(ready), now, lease) if ready else []
                if claimed:
                    work.append(asyncio.create_task(self._send_and_record(claimed, now, lease)))
                if len(due) < size:
                    break
        finally:
            sent = sum(await asyncio.gather(*work))  # a chunk in flight is always recorded
        if work:
            self.on_change()
            async with self._recorded_cond:
                self.recorded += sent
                self._recorded_cond.notify_all()
        return total

    async def _claim(self, groups: list[list[Delivery]], now: datetime, lease: datetime) -> list[list[Delivery]]:
        claimed: list[list[Delivery]] = []
        async with self.db.session() as s, s.begin():
            for group in groups:
                context = group[0].idempotency_key if len(group) == 1 else f"batch:{uuid.uuid4().hex}"
                won = await deliveries.claim(s, [d.id or 0 for d in group], lease_until=lease, context=context,
                                             token=self.token)
                got = [d for d in group if d.id in won]
                for d in got:
                    d.attempts, d.send_context, d.claim = d.attempts + 1, context, self.token
                    self._last_to[d.to_address] = now
                if got:
                    claimed.append(got)
        return claimed

    async def _send_and_record(self, claimed: list[list[Delivery]], now: datetime, lease: datetime) -> int:
        """Send one claimed chunk and record every outcome; returns how many were recorded sent."""
        results = await asyncio.gather(*(self._send(g, lease) for g in claimed))
        outcomes_by_row = [(d, o) for group, outs in zip(claimed, results, strict=True)
                           for d, o in zip(group, outs, strict=True)]
        failing = [d for d, o in outcomes_by_row if _definite_transient(o)]
        facts = await self._retry_facts(failing)
        changes = self._health_changes(outcomes_by_row, now)
        roster = await self.roster.get() if changes and self.roster is not None else None  # before the writer
        async with self.db.session() as s, s.begin():
            receipts: list[tuple[Delivery, str, str]] = []
            for d, outcome in outcomes_by_row:
                if isinstance(outcome, SendReceipt):
                    receipts.append((d, outcome.provider, outcome.provider_id))
                else:
                    await self._record_failure(s, d, outcome, now, facts.get(d.id or 0))
            sent = await deliveries.mark_sent(s, receipts, now, self.token)
            await self._after_sent(s, sent, now)
            for channel, (failing_now, error) in changes.items():
                await self._announce(s, roster, channel, failing_now, error, now)
            for channel in {d.channel for d in failing}:
                if self.health.get(channel, ChannelHealth()).failing_since is not None:
                    await deliveries.schedule_probe(s, channel, now + timedelta(seconds=self.cfg.backoff_seconds))
        if sent:
            # After the commit, so a report parked meanwhile is seen by one side or the other.
            async with self.db.session() as s, s.begin():
                moved = {d.id for d in sent}
                await apply_parked_reports(s, [(d.id or 0, p, pid) for d, p, pid in receipts if d.id in moved], now)
        return len(sent)

    def _provider(self, channel: str) -> str | None:
        """The provider behind a channel name of this sender (for the error metrics)."""
        ch = self.channels.get(channel)
        return str(ch.provider) if ch is not None else None

    def _mine(self, q: Any) -> Any:
        """`q` narrowed to the purposes this sender owns."""
        if self.purposes is not None:
            q = q.where(col(Delivery.purpose).in_([p.value for p in self.purposes]))
        if self.exclude_purposes:
            q = q.where(col(Delivery.purpose).not_in([p.value for p in self.exclude_purposes]))
        return q

    def _spacing_ok(self, d: Delivery, now: datetime, min_gap: timedelta) -> bool:
        last = self._last_to.get(d.to_address)
        return last is None or now - last >= min_gap or d.purpose == Purpose.REPLY_HELP

    def _group(self, rows: list[Delivery]) -> list[list[Delivery]]:
        """Same text on a batch-capable channel goes out in provider batches; the rest singly.
        One recipient appears once per group (a batch is one request)."""
        out: list[list[Delivery]] = []
        batches: dict[tuple[str, str], tuple[list[Delivery], set[str]]] = {}
        for d in rows:
            channel = self.channels.get(d.channel)
            if channel is None or channel.max_batch <= 1:
                out.append([d])
                continue
            group, recipients = batches.setdefault((d.channel, d.body), ([], set()))
            if d.to_address in recipients:
                out.append([d])
                continue
            group.append(d)
            recipients.add(d.to_address)
            if len(group) >= channel.max_batch:
                out.append(group)
                del batches[(d.channel, d.body)]
        out.extend(group for group, _ in batches.values())
        return out

    async def _send(self, group: list[Delivery], lease_until: datetime) -> list[SendReceipt | Exception]:
        channel = self.channels.get(group[0].channel)
        if channel is None:
            return [PermanentSendError(f"no channel {group[0].channel!r} configured") for _ in group]
        async with self._sem:
            # Start only a send that ends (provider timeout) and is recorded within its lease.
            timeout = send_timeout_of(channel)
            latest = lease_until - timedelta(seconds=self.speed * (timeout + self.cfg.lease_margin_seconds / 2))
            if self.clock.now() > latest:
                return [NotStarted() for _ in group]
            pacer = self._pacers.get(group[0].channel)
            if pacer is not None:
                await pacer.wait()  # the provider's request rate
            try:
                async with asyncio.timeout(timeout + self.cfg.lease_margin_seconds / 4):
                    if len(group) > 1:
                        return list(await channel.send_many([message_of(d) for d in group],
                                                            group[0].send_context or ""))
                    return [await channel.send(message_of(group[0]))]
            except (TransientSendError, PermanentSendError) as e:
                return [e for _ in group]
            except Exception as e:  # a timeout, an SDK bug or a network oddity: no definite answer
                return [InDoubtSendError(f"{type(e).__name__}: {e}") for _ in group]

    async def _record_failure(self, s: AsyncSession, d: Delivery, outcome: Exception, now: datetime,
                              facts: RetryFacts | None = None) -> None:
        if isinstance(outcome, NotStarted):
            await deliveries.give_back(s, d, now, self.token)
            return
        provider = self._provider(d.channel)
        if isinstance(outcome, PermanentSendError):
            await deliveries.mark_failed(s, d, str(outcome), now, token=self.token, reason=error_reason(outcome),
                                         provider=provider)
            return
        if not _definite_transient(outcome):
            channel = self.channels.get(d.channel)
            if channel is not None and channel.lookup != "none":
                # Perhaps accepted: looked up (recover_in_doubt) once the provider can list it.
                look_up_at = now + timedelta(seconds=self.speed * float(getattr(channel, "lookup_after", 5.0)))
                await deliveries.mark_in_doubt(s, d, str(outcome), look_up_at, now, token=self.token,
                                               provider=provider)
                return
            if self.cfg.in_doubt_without_lookup == "fail":
                await deliveries.mark_failed(s, d, f"in doubt and {d.channel} cannot be asked: {outcome}", now,
                                             token=self.token, reason="in_doubt", provider=provider)
                return
        await self._retry_or_give_up(s, d, outcome, now, facts)

    async def _retry_or_give_up(self, s: AsyncSession, d: Delivery, outcome: Exception, now: datetime,
                                facts: RetryFacts | None) -> None:
        facts = facts or RetryFacts(purpose=d.purpose, attempts=d.attempts, created_at=d.created_at)
        to_channel = self.failover.get(d.channel)
        after = self.cfg.failover_after_seconds
        decision = after_failure(facts, now, max_attempts=self.cfg.max_attempts,
                                 failover_after=timedelta(seconds=after) if after else None,
                                 can_fail_over=to_channel is not None)
        to_address = d.to_address
        if decision == AfterFailure.FAIL_OVER and to_channel is not None \
                and not (_phone_channel(d.channel) and _phone_channel(to_channel)):
            to_address = await _address_of(s, d.person_id, to_channel)
            if not to_address:  # nobody to reach on that channel: keep trying this one
                decision = after_failure(facts, now, max_attempts=self.cfg.max_attempts, failover_after=None,
                                         can_fail_over=False)
        if decision == AfterFailure.MOOT:
            await deliveries.mark_moot(s, d, f"no longer in force: {outcome}", now, token=self.token)
        elif decision == AfterFailure.GIVE_UP:
            await deliveries.mark_failed(s, d, str(outcome), now, token=self.token, reason=error_reason(outcome),
                                         provider=self._provider(d.channel))
        elif decision == AfterFailure.FAIL_OVER and to_channel is not None:
            await deliveries.fail_over(s, d, to_channel, to_address, str(outcome), now, token=self.token)
            self.on_change()
        else:
            retry_after = outcome.retry_after if isinstance(outcome, TransientSendError) else None
            await deliveries.retry_later(s, d, str(outcome), now + self.backoff(d.attempts, retry_after), now,
                                         token=self.token, reason=error_reason(outcome),
                                         provider=self._provider(d.channel))

    async def _retry_facts(self, rows: list[Delivery]) -> dict[int, RetryFacts]:
        """Whether each failing row's warning is still in force and its call still open."""
        if not rows:
            return {}
        alert_ids = {d.alert_id for d in rows if d.alert_id is not None}
        call_ids = {d.call_id for d in rows if d.call_id is not None}
        async with self.db.read() as s:
            alerts = {a: (st, exp) for a, st, exp in (await s.exec(select(Alert.id, Alert.state, Alert.expires).where(
                col(Alert.id).in_(alert_ids)))).all()} if alert_ids else {}
            calls = dict((await s.exec(select(Call.id, Call.state).where(col(Call.id).in_(call_ids)))).all()) \
                if call_ids else {}
        out: dict[int, RetryFacts] = {}
        for d in rows:
            alert = alerts.get(d.alert_id) if d.alert_id is not None else None
            out[d.id or 0] = RetryFacts(
                purpose=d.purpose, attempts=d.attempts, created_at=d.created_at,
                alert_state=(alert[0] if alert else AlertState.CANCELLED.value) if d.alert_id is not None else None,
                alert_expires=alert[1] if alert else None,
                call_state=calls.get(d.call_id, CallState.CANCELLED.value) if d.call_id is not None else None)
        return out

    # -- provider health -------------------------------------------------------------------

    def _health_changes(self, outcomes: list[tuple[Delivery, SendReceipt | Exception]],
                        now: datetime) -> dict[str, tuple[bool, str]]:
        """Channels that started failing in this pass (every request failed without a
        definite refusal of the message itself) or recovered (a send went through):
        channel → (failing now, the error)."""
        ok: dict[str, int] = {}
        bad: dict[str, str] = {}
        for d, o in outcomes:
            if isinstance(o, SendReceipt):
                ok[d.channel] = ok.get(d.channel, 0) + 1
            elif isinstance(o, NotStarted | PermanentSendError):
                continue
            else:
                bad.setdefault(d.channel, str(o))
        changes: dict[str, tuple[bool, str]] = {}
        for channel in set(ok) | set(bad):
            health = self.health.setdefault(channel, ChannelHealth())
            if ok.get(channel):
                health.last_ok = now
                if health.failing_since is not None or not health.checked:
                    # Recovered; or, first time this process sees it work, perhaps recovered
                    # from a failure announced before a restart (_announce asks the events).
                    changes[channel] = (False, "")
                    health.failing_since = None
                health.checked = True
            elif health.failing_since is None:
                health.failing_since, health.last_error, health.checked = now, bad[channel], True
                changes[channel] = (True, bad[channel])
        return changes

    async def _announce(self, s: AsyncSession, roster: RosterSnapshot | None, channel: str, failing: bool,
                        error: str, now: datetime) -> None:
        """Tell the duty room once when a provider starts failing and once when it is back
        (another instance, or this one before a restart, may have told them already: the
        last provider event of the channel says)."""
        last = await _last_provider_event(s, channel)
        if (failing and last == "provider_failing") or (not failing and last != "provider_failing"):
            return
        ch = self.channels.get(channel)
        provider = getattr(ch, "provider", channel)
        kind = "provider_failing" if failing else "provider_recovered"
        pending = 0
        if not failing:
            pending = await deliveries.bring_forward(s, channel, now)  # the backlog goes out now
        if failing:
            details = (f"{channel} 通道（{provider}）发送失败：{error[:120]}。"
                       "预警消息将持续重试直至预警结束，请准备电话等其他方式通知。")
        else:
            details = f"{channel} 通道（{provider}）已恢复，积压消息正在按紧急程度补发。"
        notice_channel = self.failover.get(channel, channel) if failing else channel
        if roster is None or self.templates is None:
            log.error(kind.replace("_", " "), channel=channel, provider=provider, error=error, backlog=pending)
            events.record(s, now, kind, for_channel=channel, provider=provider, details=details, error=error)
            return
        await notify_duty_room(s, roster, self.templates, now, kind=kind, details=details,
                               key=f"{kind}:{channel}:{now.isoformat()}", channel=notice_channel,
                               provider=provider, error=error, backlog=pending, for_channel=channel)
    async def _after_sent(self, s: AsyncSession, sent: list[Delivery], now: datetime) -> None:
        if self.after_sent is not None:
            await self.after_sent(s, [d for d in sent if d.purpose == Purpose.WARNING and d.call_id], now)

    # -- in doubt --------------------------------------------------------------------------

    async def recover_in_doubt(self, everything: bool) -> int:
        """Resolve rows left in `sending` by a crashed sender: take them over, look each up
        with its provider, and record it sent (found) or put it back to pending (not found).
        `everything` at start-up of a single-instance deployment; otherwise only rows whose
        lease has run out. Returns how many rows were looked at."""
        now = self.clock.now()
        async with self.db.read() as s:
            q = self._mine(select(Delivery).where(Delivery.state == DeliveryState.SENDING))
            if not everything:
                q = q.where(col(Delivery.lease_until) <= now)
            rows = (await s.exec(q)).all()
        # Providers compare against their own (wall) clocks, not the engine's clock.
        since = utcnow() - timedelta(days=1)
        lease = now + self.lease
        handled = 0
        for d in rows:
            async with self.db.session() as s, s.begin():
                mine = await deliveries.take_over(s, d, now=now, lease_until=lease, token=self.token,
                                                  ignore_lease=everything)
            if not mine:
                continue  # another instance took it over first
            handled += 1
            channel = self.channels.get(d.channel)
            receipt: SendReceipt | None = None
            if channel is not None and channel.lookup == "none" and self.cfg.in_doubt_without_lookup == "fail":
                async with self.db.session() as s, s.begin():
                    await deliveries.mark_failed(s, d, f"in doubt and {d.channel} cannot be asked", now,
                                                 token=self.token, reason="in_doubt",
                                                 provider=self._provider(d.channel))
                continue
            if channel is not None and channel.lookup != "none":
                try:
                    receipt = await channel.find_sent(message_of(d, d.send_context), since=since)
                except Exception as e:  # provider unreachable: keep it in doubt, look again later
                    log.warning("in-doubt lookup failed", delivery=d.id, error=str(e))
                    async with self.db.session() as s, s.begin():
                        await deliveries.extend_lease(s, d, now + self.backoff(1, None), self.token)
                    continue
            async with self.db.session() as s, s.begin():
                if receipt is not None:
                    moved = await deliveries.mark_sent(s, [(d, receipt.provider, receipt.provider_id)], now,
                                                       self.token, event="delivery_reconciled")
                    await self._after_sent(s, moved, now)
                    if moved:
                        self.on_change()
                else:
                    await deliveries.release(s, d, now, self.token)
            if receipt is not None:
                async with self.db.session() as s, s.begin():
                    await apply_parked_reports(s, [(d.id or 0, receipt.provider, receipt.provider_id)], now)
        return handled

    # -- for tests and drills --------------------------------------------------------------

    async def wait_records_after(self, seen: int) -> None:
        """Until more than `seen` sends have been recorded."""
        await self.wait_recorded(seen + 1)

    async def wait_recorded(self, n: int) -> None:
        """Until at least `n` sends have been recorded as sent (for tests and drills)."""
        async with self._recorded_cond:
            await self._recorded_cond.wait_for(lambda: self.recorded >= n)
