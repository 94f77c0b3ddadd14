"""A simulated SL 651-2014 telemetry station (rain gauge / water-level station), for tests and
the demo: it builds report frames in HEX or ASCII mode, sends them over TCP (one connection,
as a GPRS/4G station keeps) or UDP, waits for the centre's confirmation and sends the same
frame again (same serial number) when none comes, as real stations do.

Usage (a storm against a running warnd with [feeds] sl651_tcp = "0.0.0.0:5005")::

    python -m devtools.simulators.sl651_station --host 127.0.0.1 --port 5005 \\
        --address 0010100001 --password 1234 --mode ascii --rain 5,12,18,25
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from warnd.cap.sl651 import (
    BEIJING,
    ETB,
    ETX,
    TIMED,
    Frame,
    Observation,
    Report,
    Sl651Error,
    decode_frame,
    encode_frame,
    encode_report_body,
    split_stream,
)


@dataclass
class Sl651Station:
    address: str  # 10 digits
    password: str = "1234"
    centre: int = 1
    mode: str = "hex"  # or "ascii"
    category: str = "P"  # P rain gauge, H river level
    serial: int = 0
    pt: float = 0.0  # the cumulative rain counter
    sent_frames: list[bytes] = field(default_factory=list)

    def next_serial(self) -> int:
        self.serial = (self.serial % 0xFFFF) + 1
        return self.serial

    def report(self, at: datetime, *, function: int = TIMED, rain_mm: float | None = None,
               level_m: float | None = None, voltage: float = 12.6, drp: Iterable[float] = (),
               pj: bool = True, sent: datetime | None = None) -> bytes:
        """A report frame observed at `at`: `rain_mm` fell since the previous report (the
        counter PT grows by it, PJ carries it), `level_m` is Z."""
        values: dict[str, float | None] = {}
        if rain_mm is not None:
            self.pt = round(self.pt + rain_mm, 1)
            values["PT"] = self.pt
            if pj:
                values["PJ"] = rain_mm
        if level_m is not None:
            values["Z"] = level_m
        values["VT"] = voltage
        obs = Observation(at.astimezone(BEIJING).replace(second=0, microsecond=0), values, tuple(drp))
        body = encode_report_body(Report(self.next_serial(), (sent or at).astimezone(BEIJING).replace(microsecond=0),
                                         self.address, self.category, (obs,)), self.mode)
        return self.frame(function, body)

    def frame(self, function: int, body: bytes, *, end: int = ETX, packet: tuple[int, int] | None = None) -> bytes:
        raw = encode_frame(Frame(self.mode, self.centre, self.address, self.password, function, True, body, end,
                                 packet))
        self.sent_frames.append(raw)
        return raw

    def packets(self, function: int, body: bytes, size: int) -> list[bytes]:
        """One message cut into packets of `size` body bytes (multi-packet transmission)."""
        parts = [body[i:i + size] for i in range(0, len(body), size)]
        return [self.frame(function, p, end=ETX if n == len(parts) else ETB, packet=(len(parts), n))
                for n, p in enumerate(parts, 1)]


class TcpLink:
    """One station's TCP connection to the centre."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self._buf = b""

    @classmethod
    async def open(cls, host: str, port: int) -> TcpLink:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def receive(self, timeout: float = 5.0) -> Frame:  # noqa: ASYNC109
        """The next frame from the centre; raises TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                frames, self._buf, _ = split_stream(self._buf)
                if frames:
                    first, rest = frames[0], b"".join(frames[1:])
                    self._buf = rest + self._buf
                    return decode_frame(first)
                chunk = await self.reader.read(4096)
                if not chunk:
                    raise ConnectionError("the centre closed the connection")
                self._buf += chunk

    async def report(self, raw: bytes, *, retries: int = 3, timeout: float = 10.0) -> Frame:  # noqa: ASYNC109
        """Send a frame and wait for its confirmation, sending it again when none comes."""
        for attempt in range(retries + 1):
            await self.send(raw)
            try:
                return await self.receive(timeout)
            except TimeoutError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def udp_exchange(host: str, port: int, raw: bytes, timeout: float = 5.0) -> Frame:  # noqa: ASYNC109
    """Send one datagram and wait for the centre's confirmation datagram."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class _Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not answer.done():
                answer.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(_Proto, remote_addr=(host, port))
    try:
        transport.sendto(raw)
        async with asyncio.timeout(timeout):
            return decode_frame(await answer)
    finally:
        transport.close()


async def storm(host: str, port: int, station: Sl651Station, rain: list[float], start: datetime,
                every: timedelta = timedelta(minutes=10), level_m: float | None = None) -> list[Frame]:
    """Send one report per rainfall value over one TCP connection; the confirmations."""
    link = await TcpLink.open(host, port)
    try:
        out = []
        for i, mm in enumerate(rain):
            out.append(await link.report(station.report(start + i * every, rain_mm=mm, level_m=level_m)))
        return out
    finally:
        await link.close()


def main() -> None:  # pragma: no cover - a manual tool
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--address", required=True)
    p.add_argument("--password", default="1234")
    p.add_argument("--mode", choices=("hex", "ascii"), default="hex")
    p.add_argument("--rain", default="5,12,18,25", help="mm per 10-minute report, comma-separated")
    a = p.parse_args()
    station = Sl651Station(a.address, a.password, mode=a.mode)
    rain = [float(x) for x in a.rain.split(",") if x]
    start = datetime.now(BEIJING) - timedelta(minutes=10 * (len(rain) - 1))
    try:
        for f in asyncio.run(storm(a.host, a.port, station, rain, start)):
            print(f"confirmed serial {f.serial} ({'EOT' if f.end == 0x04 else f.end})")
    except (Sl651Error, OSError, TimeoutError) as e:
        raise SystemExit(f"station simulator: {e}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
