"""GB/T 35965.1-2018 (应急信息交互协议 第1部分：预警信息) → CapMessage.

The national warning release system (12379) and the provincial platforms exchange warnings
in this format. It is derived from CAP but is not CAP 1.2: the root is <alert> with no
namespace, `sendTime` replaces `sent` and is written "YYYY-MM-DD hh:mm:ss+08:00" (a space),
the hazard is a national code in `eventType` (11B03 暴雨) with no <event>, `severity` is a
colour word (Blue … Red), `senderCode` is the sender's code beside a Chinese `sender`,
`code` carries one `method` block per channel (SMS, SPEAKER, WEB, LED …) each with its own
text, `references` names the *first* message of the chain (often as a bare identifier),
`expires`/`onset`/`polygon` are often empty or "待定", and an area's `geocode` is one element
holding comma-separated 12-digit administrative codes.

The reader is lenient where the platforms are (missing urgency/certainty, empty times) and
strict where warnd relies on a value (identifier, sender code, send time, msgType,
references of an Update/Cancel). The result is an ordinary CapMessage (format "gbt35965"):
the colour is a `colour` parameter, the eventType an eventCode named "eventType", the
Chinese sender the senderName, so classification, targeting and policy are shared with CAP.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import TypeVar
from xml.etree.ElementTree import Element

from warnd.cap.model import CapArea, CapInfo, CapMessage, LatLon, NamedValue
from warnd.cap.parser import CATEGORIES, CapError, parse_circle, parse_polygon, root_name
from warnd.core.domain import AlertStatus, MsgType

FORMAT = "gbt35965"
BEIJING = timezone(timedelta(hours=8), "CST")
GEOCODE_NAME = "行政区划代码"
EVENT_TYPE_NAME = "eventType"
COLOUR_PARAMETER = "colour"

# GB/T severity is the warning colour; CAP's severity is kept in step for anything reading it.
_SEVERITY = {
    "blue": ("Minor", "blue"), "蓝色": ("Minor", "blue"), "蓝": ("Minor", "blue"),
    "yellow": ("Moderate", "yellow"), "黄色": ("Moderate", "yellow"), "黄": ("Moderate", "yellow"),
    "orange": ("Severe", "orange"), "橙色": ("Severe", "orange"), "橙": ("Severe", "orange"),
    "red": ("Extreme", "red"), "红色": ("Extreme", "red"), "红": ("Extreme", "red"),
    "minor": ("Minor", ""), "moderate": ("Moderate", ""), "severe": ("Severe", ""),
    "extreme": ("Extreme", ""), "unknown": ("Unknown", ""), "未知": ("Unknown", ""),
}
_URGENCY = frozenset({"Immediate", "Expected", "Future", "Past", "Unknown"})
_CERTAINTY = frozenset({"Observed", "Likely", "Possible", "Unlikely", "Unknown"})
_TIME_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")
_REF_TRIPLE_RE = re.compile(
    r"([^\s,;，]+),([^\s,;，]+),(\d{4}-\d{1,2}-\d{1,2}[ T]\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")
_CHAIN_ID_RE = re.compile(r"(\d{6,20})_(\d{14})")  # 41000041600000_20200205105119
_SPLIT_RE = re.compile(r"[\s,;，、；]+")
_CODE_RE = re.compile(r"\d{6}(?:\d{3}(?:\d{3})?)?")
_UNDECIDED = ("待定", "无", "-", "—", "null", "none", "n/a")

_T = TypeVar("_T")


def is_gbt(root: Element) -> bool:
    """Does this document root look like a GB/T 35965.1 <alert> (not OASIS CAP)?"""
    ns, local = root_name(root)
    if local != "alert" or ns.startswith("urn:oasis:names:tc:emergency:cap:"):
        return False
    names = {_local(c.tag) for c in root}
    return not ns or bool(names & {"sendTime", "senderCode", "eventType"})


def gbt_from_root(root: Element) -> CapMessage:
    """The message of a GB/T 35965.1 document root. Raises CapError."""
    return _Reader().alert(root)


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def parse_time(text: str, field: str) -> datetime:
    """A GB/T time: "YYYY-MM-DD hh:mm:ss+08:00" (space or T; seconds and zone optional —
    a time without a zone is Beijing time, as the national platforms write it)."""
    m = _TIME_RE.fullmatch(text.strip())
    if not m:
        raise CapError(field, f"{text.strip()!r} is not a time (YYYY-MM-DD hh:mm:ss+08:00)")
    y, mo, d, h, mi, sec, zone = m.groups()
    if zone is None:
        tz: timezone = BEIJING
    elif zone == "Z":
        tz = UTC
    else:
        z = zone.replace(":", "")
        minutes = int(z[1:3]) * 60 + int(z[3:5])
        if minutes >= 24 * 60:
            raise CapError(field, f"{text.strip()!r}: zone offset out of range")
        tz = timezone(timedelta(minutes=minutes if z[0] == "+" else -minutes))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0), tzinfo=tz)
    except ValueError as e:
        raise CapError(field, f"{text.strip()!r}: {e}") from None


def chain_sender(identifier: str) -> str | None:
    """The sender code embedded in a national identifier ("41000041600000_2020…" → its
    prefix), None when the identifier has another shape."""
    m = _CHAIN_ID_RE.fullmatch(identifier)
    return m.group(1) if m else None


def parse_references(text: str, sender: str, sent: datetime, field: str) -> tuple[tuple[str, str, datetime], ...]:
    """Entries "senderCode,identifier,sendTime" (the time may contain a space) or bare
    identifiers. A bare identifier's sender is the code it starts with (national
    identifiers do), else this message's sender; its time is the one it ends with, else
    this message's."""
    out: list[tuple[str, str, datetime]] = []
    rest = text
    for m in _REF_TRIPLE_RE.finditer(text):
        out.append((m.group(1), m.group(2), parse_time(m.group(3), field)))
        rest = rest.replace(m.group(0), " ", 1)
    for token in _SPLIT_RE.split(rest):
        if not token:
            continue
        if any(c in token for c in "<&\"'"):
            raise CapError(field, f"{token!r} is not an identifier")
        m2 = _CHAIN_ID_RE.fullmatch(token)
        when = sent
        if m2:
            try:
                when = datetime.strptime(m2.group(2), "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
            except ValueError:
                when = sent
        out.append((chain_sender(token) or sender, token, when))
    return tuple(out)


def parse_geocodes(text: str, field: str) -> tuple[NamedValue, ...]:
    """Comma-separated (or 、/space-separated) administrative codes in one element."""
    out = []
    for token in _SPLIT_RE.split(text.strip()):
        if not token:
            continue
        if not _CODE_RE.fullmatch(token):
            raise CapError(field, f"{token!r} is not a 6-, 9- or 12-digit administrative code")
        out.append((GEOCODE_NAME, token))
    return tuple(out)


class _Reader:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def _check(self, placeholder: _T, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except CapError as e:
            self.errors.extend(e.errors)
            return placeholder

    @staticmethod
    def _children(el: Element, name: str) -> list[Element]:
        return [c for c in el if _local(c.tag) == name]

    def _text(self, el: Element, name: str, path: str, *, required: bool = False) -> str | None:
        found = self._children(el, name)
        if len(found) > 1:
            raise CapError(f"{path}.{name}", "appears more than once")
        text = "".join(found[0].itertext()).strip() if found else ""
        if not text:
            if required:
                raise CapError(f"{path}.{name}", "is required" if not found else "is empty")
            return None
        return text

    def _when(self, el: Element, name: str, path: str) -> datetime | None:
        text = self._check(None, lambda: self._text(el, name, path))
        if text is None or text.casefold() in _UNDECIDED or not text[:1].isdigit():
            return None  # <expires/>, 待定: not stated
        return self._check(None, lambda: parse_time(text, f"{path}.{name}"))

    def alert(self, root: Element) -> CapMessage:
        p = "alert"
        c = self._check
        identifier = c("", lambda: _token(self._text(root, "identifier", p, required=True) or "",
                                          f"{p}.identifier"))
        code = c(None, lambda: self._text(root, "senderCode", p))
        name = c(None, lambda: self._text(root, "sender", p))
        sender = code or chain_sender(identifier) or ""
        if not sender:
            self.errors.append((f"{p}.senderCode", "is required (the sender's code)"))
        else:
            sender = c("", lambda: _token(sender, f"{p}.senderCode"))
        sent_text = c(None, lambda: self._text(root, "sendTime", p) or self._text(root, "sent", p))
        sent = datetime(1970, 1, 1, tzinfo=BEIJING)
        if sent_text is None:
            self.errors.append((f"{p}.sendTime", "is required"))
        else:
            sent = c(sent, lambda: parse_time(sent_text, f"{p}.sendTime"))
        status = c(AlertStatus.ACTUAL, lambda: _enum(AlertStatus, self._text(root, "status", p) or "Actual",
                                                     f"{p}.status"))
        msg_type: MsgType | None = c(None, lambda: _enum(MsgType, self._text(root, "msgType", p, required=True) or "",
                                         f"{p}.msgType"))
        scope = c("Public", lambda: self._text(root, "scope", p) or "Public")
        note = c(None, lambda: self._text(root, "note", p))
        known = len(self.errors)
        refs_text = c(None, lambda: self._text(root, "references", p))
        no_refs: tuple[tuple[str, str, datetime], ...] = ()
        references = c(no_refs, lambda: parse_references(refs_text, sender, sent, f"{p}.references")) \
            if refs_text else ()
        if msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not references and len(self.errors) == known:
            assert msg_type is not None
            self.errors.append((f"{p}.references", f"is required for msgType {msg_type.value}"))
        channel_texts = self.methods(root)
        infos = tuple(self.info(el, f"info[{i}]", name) for i, el in enumerate(self._children(root, "info")))
        if self.errors:
            raise CapError.several(self.errors)
        assert msg_type is not None
        return CapMessage(identifier=identifier, sender=sender, sent=sent, status=status, msg_type=msg_type,
                          scope=scope, references=references, note=note, infos=infos, version="GB/T 35965.1-2018",
                          format=FORMAT, channel_texts=channel_texts)

    def methods(self, root: Element) -> tuple[NamedValue, ...]:
        """<code><method><methodName>SMS</methodName><message>…</message></method>…</code>;
        the element names vary between platforms, so a few spellings are read."""
        out: list[NamedValue] = []
        for code in self._children(root, "code"):
            for method in code.iter():
                if _local(method.tag) != "method":
                    continue
                name = (method.get("name") or method.get("type") or "").strip()
                text = ""
                for child in method:
                    tag = _local(child.tag)
                    value = "".join(child.itertext()).strip()
                    if tag in ("methodName", "name", "type", "channel") and value:
                        name = value
                    elif tag in ("message", "content", "text", "msg", "methodContent", "methodText") and value:
                        text = value
                if not text and len(method) == 0:
                    text = (method.text or "").strip()
                if name and text:
                    out.append((name, text))
        return tuple(out)

    def info(self, el: Element, p: str, sender_name: str | None) -> CapInfo:
        c = self._check

        def opt(name: str) -> str | None:
            return c(None, lambda: self._text(el, name, p))

        event_codes: list[NamedValue] = []
        for i, et in enumerate(self._children(el, "eventType")):
            value = "".join(et.itertext()).strip()
            if value:
                if any(ch.isspace() or ch in "<&" for ch in value):
                    self.errors.append((f"{p}.eventType[{i}]", f"{value!r} is not an event-type code"))
                event_codes.append((EVENT_TYPE_NAME, value))
        for ec in self._children(el, "eventCode"):  # CAP-style, some platforms add it
            vn = _inner(ec, "valueName")
            v = _inner(ec, "value")
            if v:
                event_codes.append((vn or EVENT_TYPE_NAME, v))
        parameters: list[NamedValue] = []
        severity = "Unknown"
        sev = opt("severity")
        if sev is not None:
            known = _SEVERITY.get(sev.casefold())
            if known is None:
                # A bare level number ("1", "4") is not a colour without the source's scheme.
                parameters.append(("severity", sev))
            else:
                severity, colour = known
                if colour:
                    parameters.append((COLOUR_PARAMETER, colour))
        for pe in self._children(el, "parameter"):
            vn = _inner(pe, "valueName")
            v = _inner(pe, "value")
            if vn:
                parameters.append((vn, v))
        urgency = opt("urgency") or "Unknown"
        certainty = opt("certainty") or "Unknown"
        categories = tuple(x for x in ("".join(cat.itertext()).strip() for cat in self._children(el, "category"))
                           if x in CATEGORIES)
        return CapInfo(
            language=opt("language") or "zh-CN",
            categories=categories,
            event=opt("event") or "",
            urgency=urgency if urgency in _URGENCY else "Unknown",
            severity=severity,
            certainty=certainty if certainty in _CERTAINTY else "Unknown",
            event_codes=tuple(event_codes),
            effective=self._when(el, "effective", p),
            onset=self._when(el, "onset", p),
            expires=self._when(el, "expires", p),
            sender_name=opt("senderName") or sender_name,
            headline=opt("headline"),
            description=opt("description"),
            instruction=opt("instruction"),
            parameters=tuple(parameters),
            areas=tuple(self.area(a, f"{p}.area[{i}]") for i, a in enumerate(self._children(el, "area"))),
        )

    def area(self, el: Element, p: str) -> CapArea:
        c = self._check
        polygons: list[tuple[LatLon, ...]] = []
        for i, poly in enumerate(self._children(el, "polygon")):
            text = "".join(poly.itertext()).strip()
            if text and text not in _UNDECIDED:
                polygons.append(c((), partial(parse_polygon, text, f"{p}.polygon[{i}]")))
        circles: list[tuple[float, float, float]] = []
        for i, circ in enumerate(self._children(el, "circle")):
            text = "".join(circ.itertext()).strip()
            if text and text not in _UNDECIDED:
                circles.append(c((0.0, 0.0, 0.0), partial(parse_circle, text, f"{p}.circle[{i}]")))
        geocodes: list[NamedValue] = []
        for i, geo in enumerate(self._children(el, "geocode")):
            value_el = self._children(geo, "value")
            if value_el:  # CAP-style <geocode><valueName/><value/></geocode>
                text = "".join(value_el[0].itertext())
            else:
                text = "".join(geo.itertext())
            geocodes.extend(c((), partial(parse_geocodes, text, f"{p}.geocode[{i}]")))
        desc = c(None, lambda: self._text(el, "areaDesc", p)) or "、".join(v for _n, v in geocodes)
        if not desc:
            self.errors.append((f"{p}.areaDesc", "is required when the area has no geocode"))
        return CapArea(area_desc=desc, polygons=tuple(polygons), circles=tuple(circles), geocodes=tuple(geocodes))


def _inner(el: Element, name: str) -> str:
    """The text of `el`'s children named `name`, joined and stripped."""
    return "".join(t for c in el if _local(c.tag) == name for t in c.itertext()).strip()


_E = TypeVar("_E", AlertStatus, MsgType)


def _enum(kind: type[_E], value: str, field: str) -> _E:
    for m in kind:
        if m.value.casefold() == value.casefold():
            return m
    allowed = ", ".join(m.value for m in kind)
    raise CapError(field, f"{value!r} is not one of {allowed}")


def _token(value: str, field: str) -> str:
    if any(ch.isspace() or ch in ",<&" for ch in value):
        raise CapError(field, f"{value!r} contains a space, comma or restricted character")
    return value
