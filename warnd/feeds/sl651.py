"""The SL 651-2014 station gateway: rain gauges and water-level stations send their frames
straight to warnd over TCP or UDP ([feeds] sl651_tcp / sl651_udp), HEX or ASCII mode.

For every frame (codec: warnd.cap.sl651):

- the CRC is checked first; a bad CRC is logged and counted (per station when the address
  can be read, and in total) and never evaluated or confirmed, so the station sends it again;
- the station address and password are checked against stations.toml (`sl651_address`,
  `sl651_password`); an unknown station or a wrong password is refused and logged, with no
  confirmation;
- keep-alive frames (2F) are only noted; every other upstream frame is confirmed with a
  downstream frame (same function, station, centre and password, the frame's serial and
  the centre's time, end EOT); a packet of a multi-packet message is answered ACK and the
  packets are joined in order before decoding;
- a retransmission (same station and serial number as a frame already handled) is
  confirmed again but not evaluated twice;
- test reports (30) are confirmed and noted, never evaluated; reports (31–34) become readings
  of the existing telemetry path (warnd.feeds.telemetry), so thresholds, hysteresis and
  hold-off apply unchanged. Readings are stored, then the frame is confirmed, then they are
  evaluated (raising a warning can take seconds on a busy county; the station must not wait
  for it and send again). A crash between confirmation and evaluation loses nothing: the
  telemetry module evaluates stored readings nobody evaluated. Rainfall comes from the twelve 5-minute values (DRP) when the
  frame has them, else from the difference of the cumulative counter PT with the previous
  value (a smaller value is a counter reset: the new value is the rain since the reset; a
  late frame, observed before one already handled, counts nothing), else from the current
  rainfall PJ. The water level is Z. A 33 (加报, threshold-triggered)
  report triggers an evaluation of what is stored; it is never a warning by itself;
- station health (last frame, battery voltage VT, frames, bad CRCs, retransmissions) is
  shown in GET /api/v1/feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog

from warnd.cap.sl651 import (
    ACK,
    ADDED,
    ETB,
    FUNCTIONS,
    KEEP_ALIVE,
    REPORTS,
    SOH,
    TEST,
    CrcError,
    Frame,
    Report,
    Sl651Error,
    confirmation,
    decode_frame,
    decode_report,
    split_stream,
)
from warnd.clock import Clock
from warnd.feeds.stations import Station, Stations
from warnd.feeds.telemetry import Reading, TelemetryService

log = structlog.get_logger("warnd.sl651")

PT_METRIC = "sl651_pt"
MAX_STREAM_BUFFER = 64 * 1024
MAX_RAIN_STEP_MM = 500.0  # a counter jump larger than this is not rain (a reprogrammed counter)
SEEN_SERIALS = 64  # per station: how far back retransmissions are recognised

Recorder = Callable[..., Awaitable[None]]
_ADDED = Reading("", datetime.min.replace(tzinfo=UTC))  # marker: a 33 report asks for an evaluation


@dataclass
class StationHealth:
    station: str
    address: str
    last_frame_at: datetime | None = None
    last_function: str = ""
    voltage: float | None = None
    frames: int = 0
    bad_crc: int = 0
    retransmissions: int = 0
    refused: int = 0

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {"station": self.station, "address": self.address,
                "last_frame_at": self.last_frame_at.isoformat() if self.last_frame_at else None,
                "seconds_since_frame": (now - self.last_frame_at).total_seconds() if self.last_frame_at else None,
                "last_function": self.last_function, "battery_v": self.voltage, "frames": self.frames,
                "bad_crc": self.bad_crc, "retransmissions": self.retransmissions, "refused": self.refused}


@dataclass
class _Assembly:
    parts: dict[int, bytes] = field(default_factory=dict)
    total: int = 0


class StationGateway:
    """Frames in, confirmations out; readings into the telemetry service. No sockets here
    (Sl651Server owns them), so every rule is testable with bytes."""

    def __init__(self, telemetry: TelemetryService, stations: Stations, clock: Clock, record: Recorder):
        self.telemetry, self.clock, self.record = telemetry, clock, record
        self.by_address = stations.by_sl651_address()
        self.health = {a: StationHealth(s.id, a) for a, s in self.by_address.items()}
        self.bad_crc_total = 0
        self.unknown_total = 0
        self._seen: dict[str, deque[int]] = {}
        self._assembly: dict[tuple[str, int], _Assembly] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def receive(self, raw: bytes, peer: str = "") -> tuple[list[bytes], Callable[[], Awaitable[None]]]:
        """One frame as received: (frames to send back, the evaluation to run once they are
        sent). Everything durable (the readings) is stored before this returns."""
        replies, pending = await self._receive(raw, peer)

        async def after() -> None:
            for reading, stored in pending:
                await self.telemetry.evaluate(reading, stored)
            if evaluate_all:
                await self.telemetry.evaluate_pending()

        evaluate_all = bool(pending) and pending[-1][0] is _ADDED
        if evaluate_all:
            pending.pop()
        return replies, after

    async def _receive(self, raw: bytes, peer: str) -> tuple[list[bytes], list[tuple[Reading, bool]]]:
        try:
            frame = decode_frame(raw)
        except CrcError as e:
            self.bad_crc_total += 1
            address = _unchecked_address(raw)
            h = self.health.get(address)
            if h is not None:
                h.bad_crc += 1
            await self.record("sl651_bad_crc", peer=peer, address=address, detail=e.detail)
            return [], []
        except Sl651Error as e:
            await self.record("sl651_refused", peer=peer, reason=e.detail, field=e.field)
            return [], []
        if not frame.upstream:
            return [], []
        station = self.by_address.get(frame.station)
        if station is None:
            self.unknown_total += 1
            await self.record("sl651_refused", peer=peer, address=frame.station, reason="unknown station")
            return [], []
        h = self.health[frame.station]
        if station.sl651_password and frame.password != station.sl651_password:
            h.refused += 1
            await self.record("sl651_refused", peer=peer, address=frame.station, station=station.id,
                              reason="wrong password")
            return [], []
        now = self.clock.now()
        h.frames += 1
        h.last_frame_at = now
        h.last_function = FUNCTIONS.get(frame.function, f"{frame.function:02X}")
        if frame.function == KEEP_ALIVE:
            return [], []
        lock = self._locks.setdefault(frame.station, asyncio.Lock())
        async with lock:
            if frame.packet is not None:
                whole = self._assemble(frame)
                if whole is None:
                    return [confirmation(frame, now, end=ACK)], []
                reply_to, frame = frame, whole
            else:
                reply_to = frame
            pending = await self._report(station, frame, h, peer)
            return [confirmation(reply_to, now)], pending

    def _assemble(self, frame: Frame) -> Frame | None:
        """Keep a packet; the whole message (bodies joined in packet order) once all arrived."""
        assert frame.packet is not None
        total, number = frame.packet
        key = (frame.station, frame.function)
        a = self._assembly.setdefault(key, _Assembly())
        if a.total != total:
            a.parts, a.total = {}, total
        a.parts[number] = frame.body
        if frame.end == ETB or len(a.parts) < total:
            return None
        del self._assembly[key]
        body = b"".join(a.parts[i] for i in sorted(a.parts))
        return Frame(frame.mode, frame.centre, frame.station, frame.password, frame.function, True, body,
                     frame.end, None)

    async def _report(self, station: Station, frame: Frame, h: StationHealth,
                      peer: str) -> list[tuple[Reading, bool]]:
        """Store what a whole upstream frame carries; the readings to evaluate (a 33 report
        ends with the _ADDED marker: evaluate everything pending as well)."""
        seen = self._seen.setdefault(frame.station, deque(maxlen=SEEN_SERIALS))
        serial = frame.serial
        if serial is not None and serial in seen:
            h.retransmissions += 1
            return []  # the station missed our confirmation: confirm again, evaluate once
        try:
            report = decode_report(frame)
        except Sl651Error as e:
            await self.record("sl651_unreadable", peer=peer, station=station.id, serial=serial, reason=e.detail)
            return []  # confirmed: sending it again would not make it readable
        voltage = report.value("VT")
        if voltage is not None:
            h.voltage = voltage
        pending: list[tuple[Reading, bool]] = []
        if frame.function in REPORTS:
            for reading in await self.readings(station, report):
                pending.append((reading, await self.telemetry.store(reading)))
            if frame.function == ADDED:
                # A threshold-triggered report: evaluate now, the thresholds decide.
                pending.append((_ADDED, False))
        elif frame.function == TEST:
            log.info("SL 651 test report", station=station.id, serial=serial)
        if serial is not None:
            seen.append(serial)
        return pending

    async def readings(self, station: Station, report: Report) -> list[Reading]:
        """Readings of the telemetry path from a decoded report (see the module docstring)."""
        rain: dict[datetime, float] = {}
        level: dict[datetime, float] = {}
        has_drp = any(o.drp for o in report.observations)
        for o in report.observations:
            at = o.at.astimezone(UTC)
            for i, mm in enumerate(o.drp):
                if mm is not None:
                    t = at + timedelta(minutes=5 * i)
                    rain[t] = rain.get(t, 0.0) + mm
            z = o.values.get("Z")
            if z is not None:
                level[at] = z
            pt = o.values.get("PT")
            increment: float | None = None
            if pt is not None:
                previous, late = await self.telemetry.counter(station.id, PT_METRIC, at, pt)
                if late:
                    continue  # a frame older than one already handled: the later PT has counted its rain
                if previous is not None:
                    increment = pt - previous if pt >= previous else pt  # smaller: the counter was reset
            if increment is None:
                increment = o.values.get("PJ")
            if not has_drp and increment is not None:
                if 0 <= increment <= MAX_RAIN_STEP_MM:
                    rain[at] = rain.get(at, 0.0) + increment
                else:
                    await self.record("sl651_rain_ignored", station=station.id, time=at.isoformat(),
                                      increment=increment)
        return [Reading(station.id, t, rain_mm=rain.get(t), level_m=level.get(t))
                for t in sorted(set(rain) | set(level))]

    def health_rows(self) -> dict[str, Any]:
        now = self.clock.now()
        return {"bad_crc": self.bad_crc_total, "unknown_station_frames": self.unknown_total,
                "stations": [h.as_json(now) for _a, h in sorted(self.health.items())]}


def _unchecked_address(raw: bytes) -> str:
    """The station address a frame claims, read without trusting it (for counting only)."""
    if raw[:2] == b"\x7e\x7e" and len(raw) >= 8:
        return raw[3:8].hex().upper()
    if raw[:1] == bytes([SOH]) and len(raw) >= 13:
        return raw[3:13].decode("ascii", errors="replace").upper()
    return ""


class Sl651Server:
    """TCP and UDP listeners speaking SL 651 for the gateway."""

    def __init__(self, gateway: StationGateway, *, tcp: str = "", udp: str = "", idle_seconds: float = 300.0):
        self.gateway, self.tcp, self.udp, self.idle = gateway, tcp, udp, idle_seconds
        self._server: asyncio.Server | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.tcp_port = 0
        self.udp_port = 0
        self._busy = 0  # frames received whose evaluation has not finished
        self._idle: asyncio.Condition | None = None
        # Evaluations run one at a time, in the order frames arrived, beside the connections:
        # a slow one (raising a warning for a whole township) never delays a confirmation.
        self._evaluations: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def begin(self) -> None:
        self._busy += 1

    async def end(self) -> None:
        self._busy -= 1
        if self._idle is not None:
            async with self._idle:
                self._idle.notify_all()

    async def settle(self) -> None:
        """Wait until every frame received so far is evaluated (tests and the demo)."""
        self._idle = self._idle or asyncio.Condition()
        async with self._idle:
            await self._idle.wait_for(lambda: self._busy == 0)

    async def _evaluate(self) -> None:
        while True:
            after = await self._evaluations.get()
            try:
                await after()
            except Exception:
                log.exception("SL 651 evaluation failed; the telemetry module retries stored readings")
            finally:
                await self.end()

    def _after(self, after: Callable[[], Awaitable[None]]) -> None:
        self._evaluations.put_nowait(after)

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._evaluate(), name="sl651-evaluation")
        if self.tcp:
            host, port = _host_port(self.tcp)
            self._server = await asyncio.start_server(self._serve, host, port)
            self.tcp_port = self._server.sockets[0].getsockname()[1]
        if self.udp:
            host, port = _host_port(self.udp)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
            self._transport = transport
            self.udp_port = transport.get_extra_info("sockname")[1]
        log.info("SL 651 gateway listening", tcp=self.tcp_port or None, udp=self.udp_port or None,
                 stations=len(self.gateway.by_address))

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = str(writer.get_extra_info("peername"))
        buf = b""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle):
                        chunk = await reader.read(4096)
                except TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
                frames, buf, skipped = split_stream(buf)
                if skipped:
                    await self.gateway.record("sl651_refused", peer=peer, reason=f"{skipped} bytes between frames")
                for raw in frames:
                    self.begin()
                    try:
                        replies, after = await self.gateway.receive(raw, peer)
                    except BaseException:
                        await self.end()
                        raise
                    self._after(after)  # evaluated once the station has its confirmation
                    for reply in replies:
                        writer.write(reply)
                    await writer.drain()
                if len(buf) > MAX_STREAM_BUFFER:
                    await self.gateway.record("sl651_refused", peer=peer, reason="frame larger than the buffer")
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Sl651Server):
        self.server, self.gateway = server, server.gateway
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.begin()
        task = asyncio.get_running_loop().create_task(self._handle(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        frames, _rest, _skipped = split_stream(data)
        afters = []
        try:
            for raw in frames or [data]:
                replies, after = await self.gateway.receive(raw, str(addr))
                afters.append(after)
                for reply in replies:
                    if self.transport is not None:
                        self.transport.sendto(reply, addr)
        finally:
            async def evaluate_all() -> None:
                for a in afters:
                    await a()
            self.server._after(evaluate_all)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)
