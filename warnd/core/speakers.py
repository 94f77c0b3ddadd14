"""Loudspeaker decisions, pure: which speakers a warning covers, whether a speaker can be
counted on, the play command the device receives (docs/mqtt.md), what a device's ack does to
a command, and coverage of villages per warning. warnd.speakers.service does the I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from warnd.core.domain import Colour, CommandState

# Device status order; `played` and `failed` are final (a late duplicate changes nothing).
RANK = {CommandState.PENDING: 0, CommandState.SENT: 1, CommandState.RECEIVED: 2, CommandState.PLAYING: 3,
        CommandState.PLAYED: 9, CommandState.FAILED: 9}
ACK_STATUSES = (CommandState.RECEIVED, CommandState.PLAYING, CommandState.PLAYED, CommandState.FAILED)
WAITING = (CommandState.SENT, CommandState.RECEIVED, CommandState.PLAYING)  # published, no `played` yet
FINAL = (CommandState.PLAYED, CommandState.FAILED, CommandState.CANCELLED, CommandState.EXPIRED)
PRIORITY = {Colour.BLUE: 1, Colour.YELLOW: 2, Colour.ORANGE: 3, Colour.RED: 4}


def village_of(code: str) -> str:
    """The village a speaker serves: its own code, or the village of its group."""
    return code[:12] if len(code) > 12 else code


def covered(code: str, codes: set[str] | frozenset[str]) -> bool:
    """Whether a speaker at `code` is inside a warning covering `codes` (codes or ancestors)."""
    return code in codes or any(code[:n] in codes for n in (6, 9, 12) if n < len(code))


MISSED_HEARTBEATS = 3  # a device that advertised its interval is stale after missing this many


def stale_after_for(hb_interval_s: int | None, default: timedelta) -> timedelta:
    """How long a device may stay silent: three of its own advertised heartbeat intervals,
    else the configured default."""
    return timedelta(seconds=MISSED_HEARTBEATS * hb_interval_s) if hb_interval_s else default


def darkness(online: bool | None, last_seen_at: datetime | None, now: datetime,
             stale_after: timedelta, hb_interval_s: int | None = None) -> str | None:
    """Why a speaker cannot be counted on right now ("never_seen", "offline", "stale"), or None."""
    stale_after = stale_after_for(hb_interval_s, stale_after)
    if online is None:
        return "never_seen"
    if not online:
        return "offline"
    if last_seen_at is None or now - last_seen_at > stale_after:
        return "stale"
    return None


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PlayStyle:
    voice: str = "female"
    repeat: int = 3
    volume: int = 90


def play_payload(*, cmd_id: str, alert_id: int, warning_ref: str, device_id: str, issued_at: datetime,
                 expires_at: datetime, drill: bool, colour: str, step: str, text: str,
                 style: PlayStyle) -> dict[str, Any]:
    """The `play` command of the MQTT contract (docs/mqtt.md §4)."""
    return {
        "v": 1, "type": "play", "cmd_id": cmd_id, "warning_id": str(alert_id), "warning_ref": warning_ref,
        "device_id": device_id, "issued_at": iso(issued_at), "expires_at": iso(expires_at), "drill": drill,
        "priority": PRIORITY.get(colour, 2),  # type: ignore[call-overload]
        "step": step, "colour": colour, "text": text, "tts": {"voice": style.voice, "speed": 1.0},
        "audio_url": None, "repeat": style.repeat, "volume": style.volume,
    }


def stop_payload(*, cmd_id: str, alert_id: int, device_id: str, issued_at: datetime,
                 expires_at: datetime) -> dict[str, Any]:
    """The `stop` command of the MQTT contract (docs/mqtt.md §3.4): the warning of play command
    `cmd_id` was cancelled; a device playing it or holding it in its queue drops it."""
    return {"v": 1, "type": "stop", "cmd_id": f"{cmd_id}-stop", "stops": cmd_id, "warning_id": str(alert_id),
            "device_id": device_id, "issued_at": iso(issued_at), "expires_at": iso(expires_at)}


def best_acks(acks: Iterable[tuple[str, CommandState]]) -> dict[str, CommandState]:
    """Per command, the most advanced status in a batch (a batch may hold received, playing
    and played of one device)."""
    best: dict[str, CommandState] = {}
    for cmd_id, status in acks:
        prev = best.get(cmd_id)
        if prev is None or RANK[status] > RANK[prev]:
            best[cmd_id] = status
    return best


@dataclass(frozen=True)
class CommandView:
    """What an ack decision needs to know about a stored command."""

    state: CommandState
    sent_at: datetime | None
    received_at: datetime | None
    deadline: datetime | None
    fallback: bool


def ack_values(cmd: CommandView, status: CommandState, now: datetime, ack_window: timedelta,
               reason: str | None = None) -> dict[str, Any] | None:
    """The columns an ack changes on a command, or None when it changes nothing (a repeat, a
    status behind the current one, anything after a final state)."""
    cur = cmd.state
    if cur in FINAL:
        return None  # a repeat, or a retained copy after our restart
    if cur == CommandState.NO_ACK and status not in (CommandState.PLAYED, CommandState.FAILED):
        return None
    if cur != CommandState.NO_ACK and RANK[status] <= RANK.get(cur, 0):
        return None
    values: dict[str, Any] = {"state": status.value}
    if cmd.received_at is None:
        values["received_at"] = now
    if cmd.sent_at is None:  # acked before we recorded the PUBACK: the window starts now
        values["sent_at"] = now
    if cmd.deadline is None:
        values["deadline"] = now + ack_window
    if status == CommandState.PLAYED:
        values["played_at"] = now
        values["late"] = cur == CommandState.NO_ACK or (cmd.deadline is not None and now > cmd.deadline)
    if status == CommandState.FAILED:
        values["reason"] = (reason or "other")[:32]
    return values


def needs_fallback(cmd: CommandView, status: CommandState) -> bool:
    """A device that reports failure before the window ran out opens the fallback at once
    (after no_ack it was already opened)."""
    return status == CommandState.FAILED and cmd.state != CommandState.NO_ACK and not cmd.fallback


@dataclass
class SpeakerCoverage:
    """Loudspeaker coverage of one warning (or of all warnings at one step)."""

    alert_ids: list[int] = field(default_factory=list)
    devices: int = 0
    played: int = 0  # inside the ack window
    late: int = 0  # played after the window (not counted as reached)
    failed: int = 0
    no_ack: int = 0
    expired: int = 0
    in_flight: int = 0  # pending, sent, received, playing
    villages: int = 0
    villages_reached: int = 0
    not_reached: list[str] = field(default_factory=list)  # village codes
    fallback_calls: int = 0
    fallback_confirmed: int = 0

    @property
    def village_ratio(self) -> float:
        return self.villages_reached / self.villages if self.villages else 0.0


def coverage(rows: Iterable[tuple[int, str, str, bool]], alert_ids: list[int] | None = None,
             fallback_calls: int = 0, fallback_confirmed: int = 0) -> SpeakerCoverage:
    """From (alert id, village, state, late) of every command. A village is reached for a
    warning when one of its speakers played inside the ack window; villages are counted per
    warning (a village in two warnings counts twice)."""
    rows = list(rows)
    cov = SpeakerCoverage(alert_ids=alert_ids if alert_ids is not None else sorted({a for a, _, _, _ in rows}),
                          fallback_calls=fallback_calls, fallback_confirmed=fallback_confirmed)
    reached: dict[tuple[int, str], bool] = {}
    for a, village, state, late in rows:
        cov.devices += 1
        key = (a, village)
        reached.setdefault(key, False)
        if state == CommandState.PLAYED and not late:
            cov.played += 1
            reached[key] = True
        elif state == CommandState.PLAYED:
            cov.late += 1
        elif state == CommandState.FAILED:
            cov.failed += 1
        elif state == CommandState.NO_ACK:
            cov.no_ack += 1
        elif state == CommandState.EXPIRED:
            cov.expired += 1
        elif state != CommandState.CANCELLED:
            cov.in_flight += 1
    cov.villages = len(reached)
    cov.villages_reached = sum(reached.values())
    cov.not_reached = sorted({v for (_, v), ok in reached.items() if not ok})
    return cov


@dataclass
class FleetHealth:
    total: int = 0
    online: int = 0
    offline: int = 0
    stale: int = 0
    never_seen: int = 0
    dark: list[tuple[str, str, str]] = field(default_factory=list)  # (device, region, why)


def fleet(speakers: Iterable[tuple[str, str, bool | None, datetime | None]
                             | tuple[str, str, bool | None, datetime | None, int | None]], now: datetime,
          stale_after: timedelta) -> FleetHealth:
    """From (device id, region, online, last seen[, advertised heartbeat interval]) of every
    active speaker."""
    h = FleetHealth()
    for device_id, region, online, last_seen, *hb in speakers:
        h.total += 1
        why = darkness(online, last_seen, now, stale_after, hb[0] if hb else None)
        if why is None:
            h.online += 1
            continue
        setattr(h, why, getattr(h, why) + 1)
        h.dark.append((device_id, region, why))
    h.dark.sort()
    return h
