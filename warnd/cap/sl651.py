"""SL 651-2014 (水文监测数据通信规约): the frames rain gauges and water-level stations send.

Pure encoding and decoding, no I/O (the gateway in warnd.feeds.sl651 owns the sockets).

A frame, HEX mode (upstream, station → centre)::

    7E 7E | centre 1 | station 5 (BCD) | password 2 | function 1 | flag+length 2 | STX 02
          | [SYN 16 instead of STX: packet total+number, 3 bytes] | body | ETX 03 / ETB 17 | CRC 2

ASCII mode is the same fields as characters: SOH 01, centre 2 hex chars, station 10, password 4,
function 2, flag+length 4, STX/SYN, body characters, ETX/ETB, then the CRC as 4 hex chars.
The flag is the high nibble of the length field (0 upstream, 8 downstream), the length
counts the body. The CRC is CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) over every
byte from the first start byte to the end character, sent HIGH BYTE FIRST.

The body of a report: serial number (2 bytes), send time (6 BCD bytes YYMMDDhhmmss), then
elements. An element is an identifier byte, a definition byte (high 5 bits: length in bytes,
low 3 bits: decimals) and a BCD value (first byte FF: negative; all FF: no value). Special
identifiers: F1 F1 station address + category, F0 F0 observation time (YYMMDDhhmm), 04 18
time-step code, F4 DRP (twelve 5-minute rainfalls, one HEX byte each in 0.1 mm), F5–FC DRZ
(twelve 5-minute levels, two HEX bytes each in cm), FF xx extended identifiers. ASCII bodies
are the same as words: "0001 260909080012 ST 5010123456 H TT 2609090800 Z 6.38 VT 12.5".
Times are Beijing time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "CST")

SOH, STX, ETX, EOT, ENQ, ACK, NAK, ETB, SYN, ESC = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x17, 0x16, 0x1B
HEX_START = b"\x7e\x7e"
ENDS = frozenset({ETX, ETB, ENQ, EOT, ACK, NAK, ESC})
MAX_BODY = 0xFFF  # the length field has 12 bits

# Function codes (功能码).
KEEP_ALIVE, TEST, UNIFORM, TIMED, ADDED, HOURLY = 0x2F, 0x30, 0x31, 0x32, 0x33, 0x34
FUNCTIONS = {KEEP_ALIVE: "链路维持报", TEST: "测试报", UNIFORM: "均匀时段水文信息报", TIMED: "遥测站定时报",
             ADDED: "遥测站加报报", HOURLY: "遥测站小时报"}
REPORTS = frozenset({UNIFORM, TIMED, ADDED, HOURLY})  # carry readings to evaluate

# HEX identifier → ASCII name, for the elements warnd reads (and a few it reports).
ELEMENTS: Mapping[int, str] = {
    0x1A: "P1", 0x1B: "P2", 0x1C: "P3", 0x1D: "P6", 0x1E: "P12", 0x1F: "PD",
    0x20: "PJ", 0x21: "PN01", 0x22: "PN05", 0x23: "PN10", 0x24: "PN30", 0x25: "PR", 0x26: "PT",
    0x38: "VT", 0x39: "Z",
}
BY_NAME = {v: k for k, v in ELEMENTS.items()}
# Default definition bytes (length << 3 | decimals) used when encoding.
DEFINITIONS: Mapping[str, int] = {"PJ": 0x19, "PT": 0x19, "P1": 0x19, "P2": 0x19, "P3": 0x19, "P6": 0x19,
                                  "P12": 0x19, "PD": 0x19, "PN01": 0x19, "PN05": 0x19, "PN10": 0x19,
                                  "PN30": 0x19, "PR": 0x19, "VT": 0x12, "Z": 0x23}
DRP, DRZ_FIRST, DRZ_LAST = 0xF4, 0xF5, 0xFC
TIME_STEP = 0x04
_ASCII_NAME_RE = re.compile(r"[A-Z][A-Z0-9]*")


class Sl651Error(ValueError):
    """A frame was refused; `field` names the part ("crc", "length", "body", …)."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


class CrcError(Sl651Error):
    def __init__(self, got: int, want: int):
        super().__init__("crc", f"CRC {got:04X} does not match the frame's {want:04X}")
        self.got, self.want = got, want


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# -- frames ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    mode: str  # "hex" or "ascii"
    centre: int
    station: str  # 10 hex digits, as the address is written
    password: str  # 4 hex digits
    function: int
    upstream: bool
    body: bytes  # HEX: raw bytes; ASCII: the body's characters
    end: int  # ETX, ETB, ENQ, EOT, ACK, NAK or ESC
    packet: tuple[int, int] | None = None  # (total, number) of a multi-packet message

    @property
    def serial(self) -> int | None:
        """The serial number (流水号) that starts a body, None for an empty body."""
        if self.mode == "hex":
            return int.from_bytes(self.body[:2], "big") if len(self.body) >= 2 else None
        head = self.body.strip()[:4]
        return int(head, 16) if len(head) == 4 and all(chr(c) in "0123456789abcdefABCDEF" for c in head) else None


def encode_frame(frame: Frame) -> bytes:
    if len(frame.body) > MAX_BODY:
        raise Sl651Error("length", f"body of {len(frame.body)} bytes exceeds {MAX_BODY}")
    flag = 0 if frame.upstream else 0x8000
    if frame.mode == "hex":
        centre, station = bytes([frame.centre]), bytes.fromhex(frame.station)
        addr = centre + station if frame.upstream else station + centre
        head = HEX_START + addr + bytes.fromhex(frame.password) + bytes([frame.function]) + \
            (flag | len(frame.body)).to_bytes(2, "big")
        if frame.packet is not None:
            total, number = frame.packet
            head += bytes([SYN]) + ((total << 12) | number).to_bytes(3, "big")
        else:
            head += bytes([STX])
        data = head + frame.body + bytes([frame.end])
        return data + crc16_modbus(data).to_bytes(2, "big")
    centre_hex = f"{frame.centre:02X}"
    addrs = centre_hex + frame.station if frame.upstream else frame.station + centre_hex
    text = f"{addrs}{frame.password}{frame.function:02X}{flag | len(frame.body):04X}".encode("ascii")
    head = bytes([SOH]) + text
    if frame.packet is not None:
        total, number = frame.packet
        head += bytes([SYN]) + f"{(total << 12) | number:06X}".encode("ascii")
    else:
        head += bytes([STX])
    data = head + frame.body + bytes([frame.end])
    return data + f"{crc16_modbus(data):04X}".encode("ascii")


def frame_length(buf: bytes) -> int | None:
    """Length of the frame at the start of `buf`, None if more bytes are needed. Raises
    Sl651Error when `buf` does not start with a frame header."""
    if buf[:1] == bytes([SOH]):
        if len(buf) < 24:
            return None
        try:
            n = int(buf[19:23], 16) & MAX_BODY
        except ValueError:
            raise Sl651Error("length", f"ASCII length {buf[19:23]!r} is not hexadecimal") from None
        extra = 6 if buf[23] == SYN else 0
        return 24 + extra + n + 1 + 4
    if buf[:2] == HEX_START or buf == HEX_START[:1]:
        if len(buf) < 14:
            return None
        n = int.from_bytes(buf[11:13], "big") & MAX_BODY
        extra = 3 if buf[13] == SYN else 0
        return 14 + extra + n + 1 + 2
    raise Sl651Error("start", f"not a frame start: {buf[:2].hex()}")


def split_stream(buf: bytes) -> tuple[list[bytes], bytes, int]:
    """Cut complete frames off a TCP stream: (frames, rest still incomplete, bytes of noise
    skipped to resynchronise on the next frame start)."""
    frames: list[bytes] = []
    skipped = 0
    while buf:
        try:
            n = frame_length(buf)
        except Sl651Error:
            nxt = _next_start(buf, 1)
            skipped += nxt
            buf = buf[nxt:]
            continue
        if n is None or len(buf) < n:
            break
        frames.append(buf[:n])
        buf = buf[n:]
    return frames, buf, skipped


def _next_start(buf: bytes, after: int) -> int:
    hits = [i for i in (buf.find(HEX_START, after), buf.find(bytes([SOH]), after)) if i >= 0]
    return min(hits) if hits else len(buf)


def decode_frame(data: bytes) -> Frame:
    """One whole frame, CRC checked first. Raises CrcError or Sl651Error."""
    data = bytes(data)
    if data[:1] == bytes([SOH]):
        return _decode_ascii(data)
    if data[:2] == HEX_START:
        return _decode_hex(data)
    raise Sl651Error("start", "a frame starts with 7E7E (HEX) or SOH (ASCII)")


def _decode_hex(data: bytes) -> Frame:
    if len(data) < 17:
        raise Sl651Error("length", f"{len(data)} bytes is shorter than any HEX frame")
    got, want = crc16_modbus(data[:-2]), int.from_bytes(data[-2:], "big")
    if got != want:
        raise CrcError(got, want)
    flag_len = int.from_bytes(data[11:13], "big")
    upstream = not flag_len & 0x8000
    n = flag_len & MAX_BODY
    start = data[13]
    off = 14
    packet = None
    if start == SYN:
        info = int.from_bytes(data[14:17], "big")
        packet = (info >> 12, info & 0xFFF)
        off = 17
    elif start != STX:
        raise Sl651Error("start", f"expected STX or SYN, got {start:02X}")
    if len(data) != off + n + 3:
        raise Sl651Error("length", f"length field says {n} body bytes, the frame holds {len(data) - off - 3}")
    end = data[off + n]
    if end not in ENDS:
        raise Sl651Error("end", f"{end:02X} is not an end character")
    if upstream:
        centre, station = data[2], data[3:8].hex().upper()
    else:
        station, centre = data[2:7].hex().upper(), data[7]
    return Frame("hex", centre, station, data[8:10].hex().upper(), data[10], upstream, data[off:off + n], end, packet)


def _decode_ascii(data: bytes) -> Frame:
    if len(data) < 29:
        raise Sl651Error("length", f"{len(data)} bytes is shorter than any ASCII frame")
    try:
        want = int(data[-4:], 16)
    except ValueError:
        raise Sl651Error("crc", f"{data[-4:]!r} is not a hexadecimal CRC") from None
    got = crc16_modbus(data[:-4])
    if got != want:
        raise CrcError(got, want)
    try:
        head = data[1:23].decode("ascii")
        if not all(c in "0123456789ABCDEFabcdef" for c in head):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise Sl651Error("header", "the ASCII header holds non-hexadecimal characters") from None
    flag_len = int(head[18:22], 16)
    upstream = not flag_len & 0x8000
    n = flag_len & MAX_BODY
    start = data[23]
    off = 24
    packet = None
    if start == SYN:
        try:
            info = int(data[24:30], 16)
        except ValueError:
            raise Sl651Error("packet", "packet count is not hexadecimal") from None
        packet = (info >> 12, info & 0xFFF)
        off = 30
    elif start != STX:
        raise Sl651Error("start", f"expected STX or SYN, got {start:02X}")
    if len(data) != off + n + 5:
        raise Sl651Error("length", f"length field says {n} body characters, the frame holds {len(data) - off - 5}")
    end = data[off + n]
    if end not in ENDS:
        raise Sl651Error("end", f"{end:02X} is not an end character")
    if upstream:
        centre, station = int(head[0:2], 16), head[2:12].upper()
    else:
        station, centre = head[0:10].upper(), int(head[10:12], 16)
    return Frame("ascii", centre, station, head[12:16].upper(), int(head[16:18], 16), upstream,
                 data[off:off + n], end, packet)


# -- report bodies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    at: datetime
    values: dict[str, float | None] = field(default_factory=dict)  # element name → value (None: no value)
    drp: tuple[float | None, ...] = ()  # twelve 5-minute rainfalls (mm) of the hour starting at `at`


@dataclass(frozen=True)
class Report:
    serial: int
    sent: datetime
    station: str = ""
    category: str = ""
    observations: tuple[Observation, ...] = ()
    skipped: tuple[str, ...] = ()  # elements present but not decoded (vendor series, unknown ids)

    def value(self, name: str) -> float | None:
        for o in reversed(self.observations):
            if o.values.get(name) is not None:
                return o.values[name]
        return None


def _bcd_time(b: bytes, field: str) -> datetime:
    digits = b.hex()
    if not digits.isdigit():
        raise Sl651Error(field, f"{digits} is not a BCD time")
    return _time_digits(digits, field)


def _time_digits(digits: str, field: str) -> datetime:
    parts = [int(digits[i:i + 2]) for i in range(0, len(digits), 2)]
    parts += [0] * (6 - len(parts))
    try:
        return datetime(2000 + parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], tzinfo=BEIJING)
    except ValueError as e:
        raise Sl651Error(field, f"{digits}: {e}") from None


def bcd_value(raw: bytes, decimals: int) -> float | None:
    """A BCD value; a first byte FF is a minus sign; all FF (or AA) is "no value"."""
    if raw and (all(b == 0xFF for b in raw) or all(b == 0xAA for b in raw)):
        return None
    negative = raw[:1] == b"\xff"
    digits = (raw[1:] if negative else raw).hex()
    if not digits.isdigit():
        raise Sl651Error("element", f"{raw.hex()} is not BCD")
    value = int(digits or "0") / (10 ** decimals)
    return -value if negative else value


def encode_bcd(value: float, definition: int) -> bytes:
    length, decimals = definition >> 3, definition & 7
    n = round(abs(value) * 10 ** decimals)
    width = (length - 1) * 2 if value < 0 else length * 2
    digits = f"{n:0{width}d}"
    if len(digits) > width:
        raise Sl651Error("element", f"{value} does not fit in {length} bytes with {decimals} decimals")
    return (b"\xff" if value < 0 else b"") + bytes.fromhex(digits)


def decode_report(frame: Frame) -> Report:
    """The serial, send time, station and observations of an upstream report body."""
    return _decode_hex_body(frame.body) if frame.mode == "hex" else _decode_ascii_body(frame.body)


def _decode_hex_body(body: bytes) -> Report:
    if len(body) < 8:
        raise Sl651Error("body", f"{len(body)} bytes: a report body starts with serial and send time")
    serial = int.from_bytes(body[:2], "big")
    sent = _bcd_time(body[2:8], "body.sent")
    station, category = "", ""
    groups: list[Observation] = []
    skipped: list[str] = []
    current: Observation | None = None
    i = 8
    series = False  # after a time-step code: vendor series, not decoded
    while i < len(body):
        ident = body[i]
        if i + 1 >= len(body):
            raise Sl651Error("body", f"element {ident:02X} at byte {i} has no definition byte")
        nxt = body[i + 1]
        if ident == 0xF1 and nxt == 0xF1:
            if i + 7 > len(body):
                raise Sl651Error("body", "station address element is cut short")
            station = body[i + 2:i + 7].hex().upper()
            # The category byte (P rain, H river, K reservoir …) is absent from some answers.
            category = chr(body[i + 7]) if i + 7 < len(body) else ""
            i += 8
            continue
        if ident == 0xF0 and nxt == 0xF0:
            if i + 7 > len(body):
                raise Sl651Error("body", "observation time element is cut short")
            current = Observation(_bcd_time(body[i + 2:i + 7], "body.TT"))
            groups.append(current)
            series = False
            i += 7
            continue
        if series:
            # Series after a time-step code are skipped up to the next observation time;
            # the battery voltage that ends a body (38 12 xx xx) is still read.
            rest = body[i:]
            j = rest.find(b"\xf0\xf0")
            stop = len(rest) if j < 0 else j
            tail = rest[:stop]
            if len(tail) >= 4 and tail[-4:-2] == b"\x38\x12" and current is not None:
                current.values["VT"] = bcd_value(tail[-2:], 2)
            skipped.append("series")
            i += stop
            continue
        if current is None:
            current = Observation(sent)
            groups.append(current)
        if ident == 0xFF:  # extended identifier FF xx, then its definition byte
            if i + 2 >= len(body):
                raise Sl651Error("body", "extended element is cut short")
            length = body[i + 2] >> 3
            skipped.append(f"FF{nxt:02X}")
            i += 3 + length
            continue
        length, decimals = nxt >> 3, nxt & 7
        raw = body[i + 2:i + 2 + length]
        if len(raw) < length:
            raise Sl651Error("body", f"element {ident:02X} needs {length} bytes, {len(raw)} left")
        i += 2 + length
        if ident == TIME_STEP:
            series = True
            continue
        if ident == DRP:
            values = tuple(None if b == 0xFF else b / 10 for b in raw)
            current = Observation(current.at, current.values, values)
            groups[-1] = current
            continue
        if DRZ_FIRST <= ident <= DRZ_LAST:
            skipped.append(f"DRZ{ident - DRZ_FIRST + 1}")
            continue
        name = ELEMENTS.get(ident)
        if name is None:
            skipped.append(f"{ident:02X}")
            continue
        current.values[name] = bcd_value(raw, decimals)
    return Report(serial, sent, station, category, tuple(groups), tuple(skipped))


def _decode_ascii_body(body: bytes) -> Report:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise Sl651Error("body", "an ASCII body holds non-ASCII bytes") from None
    compact = text.strip()
    head = compact[:16]
    if len(head) < 16 or not all(c in "0123456789ABCDEFabcdef" for c in head[:4]) or not head[4:].isdigit():
        # Some stations separate serial and time with a space.
        parts = compact.split(None, 2)
        if len(parts) < 2:
            raise Sl651Error("body", "a report body starts with serial and send time")
        head, rest = parts[0] + parts[1], parts[2] if len(parts) > 2 else ""
    else:
        rest = compact[16:]
    if len(head) != 16 or not head[4:].isdigit():
        raise Sl651Error("body", f"{head!r} is not serial + send time")
    try:
        serial = int(head[:4], 16)
    except ValueError:
        raise Sl651Error("body", f"{head[:4]!r} is not a serial number") from None
    sent = _time_digits(head[4:], "body.sent")
    tokens = rest.split()
    station, category = "", ""
    groups: list[Observation] = []
    skipped: list[str] = []
    current: Observation | None = None
    it: Iterator[str] = iter(tokens)
    for tok in it:
        if tok == "ST":
            station, category = next(it, "").upper(), next(it, "")
            continue
        if tok == "TT":
            t = next(it, "")
            if not (len(t) == 10 and t.isdigit()):
                raise Sl651Error("body.TT", f"{t!r} is not YYMMDDhhmm")
            current = Observation(_time_digits(t, "body.TT"))
            groups.append(current)
            continue
        if not _ASCII_NAME_RE.fullmatch(tok):
            raise Sl651Error("body", f"{tok!r} is not an element name")
        value = next(it, None)
        if value is None:
            raise Sl651Error("body", f"element {tok} has no value")
        if current is None:
            current = Observation(sent)
            groups.append(current)
        if tok == "DRP":
            if len(value) != 24 or any(c not in "0123456789ABCDEFabcdef" for c in value):
                raise Sl651Error("body.DRP", f"{value!r} is not twelve hexadecimal bytes")
            drp = tuple(None if b == 0xFF else b / 10 for b in bytes.fromhex(value))
            current = Observation(current.at, current.values, drp)
            groups[-1] = current
            continue
        if tok not in BY_NAME:
            skipped.append(tok)
            continue
        try:
            number = float(value)
        except ValueError:
            raise Sl651Error(f"body.{tok}", f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise Sl651Error(f"body.{tok}", f"{value!r} is not a number")
        current.values[tok] = number
    return Report(serial, sent, station, category, tuple(groups), tuple(skipped))


def encode_report_body(report: Report, mode: str) -> bytes:
    """The body of a report (for the station simulator and tests)."""
    if mode == "hex":
        out = report.serial.to_bytes(2, "big") + bytes.fromhex(report.sent.strftime("%y%m%d%H%M%S"))
        if report.station:
            out += b"\xf1\xf1" + bytes.fromhex(report.station) + report.category.encode("ascii")[:1]
        for o in report.observations:
            out += b"\xf0\xf0" + bytes.fromhex(o.at.astimezone(BEIJING).strftime("%y%m%d%H%M"))
            if o.drp:
                out += bytes([DRP, 0x60]) + bytes(0xFF if v is None else round(v * 10) for v in o.drp)
            for name, value in o.values.items():
                d = DEFINITIONS[name]
                raw = bytes([0xFF] * (d >> 3)) if value is None else encode_bcd(value, d)
                out += bytes([BY_NAME[name], d]) + raw
        return out
    words = [f"{report.serial:04X}{report.sent.astimezone(BEIJING):%y%m%d%H%M%S}"]
    if report.station:
        words += ["ST", report.station, report.category]
    for o in report.observations:
        words += ["TT", f"{o.at.astimezone(BEIJING):%y%m%d%H%M}"]
        if o.drp:
            words += ["DRP", bytes(0xFF if v is None else round(v * 10) for v in o.drp).hex().upper()]
        for name, value in o.values.items():
            d = DEFINITIONS[name]
            if value is not None:
                words += [name, f"{value:.{d & 7}f}"]
    return " ".join(words).encode("ascii")


def confirmation(frame: Frame, now: datetime, *, end: int = EOT) -> bytes:
    """The centre's answer to an upstream frame: a downstream frame with the same function
    code, station, centre and password, whose body is the frame's serial number and the
    centre's time; `end` EOT (done, the station may hang up), ESC (stay online) or, for a
    packet of a multi-packet message, ACK (send the next) / NAK (send it again)."""
    serial = frame.serial or 0
    t = now.astimezone(BEIJING)
    if frame.mode == "hex":
        body = serial.to_bytes(2, "big") + bytes.fromhex(t.strftime("%y%m%d%H%M%S"))
    else:
        body = f"{serial:04X}{t:%y%m%d%H%M%S}".encode("ascii")
    return encode_frame(Frame(frame.mode, frame.centre, frame.station, frame.password, frame.function, False,
                              body, end, frame.packet))
