"""Hardened CAP 1.2 / 1.1 parser.

Input comes from outside (pushed by a provincial feed or polled), so the parser assumes
hostility: the size is checked before any parsing, DTDs, entity declarations and external
references are refused (billion laughs, XXE), nothing is ever fetched, and every field the
engine relies on is validated. Errors name the offending field as a path such as
"info[0].area[1].polygon" so a feed operator can fix their message.
"""

from __future__ import annotations

import codecs
import enum
import re
from datetime import datetime
from typing import TypeVar
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from warnd.cap.model import CapArea, CapInfo, CapMessage, LatLon, NamedValue
from warnd.core.domain import AlertStatus, MsgType

CAP_NAMESPACES = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
}

DEFAULT_MAX_BYTES = 5 * 1024 * 1024

SCOPES = frozenset({"Public", "Restricted", "Private"})
CATEGORIES = frozenset(
    {
        "Geo",
        "Met",
        "Safety",
        "Security",
        "Rescue",
        "Fire",
        "Health",
        "Env",
        "Transport",
        "Infra",
        "CBRNE",
        "Other",
    }
)
URGENCIES = frozenset({"Immediate", "Expected", "Future", "Past", "Unknown"})
SEVERITIES = frozenset({"Extreme", "Severe", "Moderate", "Minor", "Unknown"})
CERTAINTIES = frozenset({"Observed", "Likely", "Possible", "Unlikely", "Unknown"})
# CAP 1.1 still allowed the deprecated "Very Likely"; it means Likely.
_CERTAINTY_ALIASES = {"Very Likely": "Likely"}

# CAP dateTime: xs:dateTime with a mandatory zone. The spec writes UTC as "-00:00" but
# real feeds also send "Z" and fractional seconds; both are unambiguous, so accepted.
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_POINT_RE = re.compile(rf"({_NUMBER}),({_NUMBER})")
# Some producers write "lat, lon"; the comma still separates unambiguously.
_COMMA_SPACE_RE = re.compile(r"\s*,\s*")
_CIRCLE_RE = re.compile(rf"({_NUMBER}),({_NUMBER})\s+({_NUMBER})")
# Encodings expat decodes natively; anything else (GB2312/GBK are common in Chinese feeds)
# is transcoded to UTF-8 by us first.
_EXPAT_ENCODINGS = frozenset(
    {"utf-8", "utf8", "utf-16", "utf16", "iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"}
)
_XML_DECL_RE = re.compile(
    rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']"
)

_XML_DECL_ENC_RE = re.compile(
    r"^(\ufeff?\s*<\?xml[^>]*?encoding\s*=\s*[\"'])[A-Za-z0-9._-]+([\"'])"
)

_E = TypeVar("_E", bound=enum.Enum)


class CapError(ValueError):
    """A CAP message was refused. `field` is a path like "alert.sent" or "xml"."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def parse_cap(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CapMessage:
    """Parse and validate one CAP 1.2 (or 1.1) <alert>. Raises CapError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_cap takes the raw bytes as received")
    data = bytes(data)
    # Checked before parsing so an oversized body costs nothing but this comparison.
    if len(data) > max_bytes:
        raise CapError("size", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if not data.strip():
        raise CapError("xml", "empty document")
    root = _parse_xml(_to_expat_encoding(data))

    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    if local != "alert":
        raise CapError("alert", f"root element is <{local}>, not a CAP <alert>")
    if ns not in CAP_NAMESPACES:
        shown = ns or "no namespace"
        raise CapError("xmlns", f"unsupported namespace {shown!r}; expected CAP 1.2 or 1.1")
    return _Reader(ns).alert(root, CAP_NAMESPACES[ns])


def _to_expat_encoding(data: bytes) -> bytes:
    m = _XML_DECL_RE.match(data[:512])
    if not m:
        return data
    declared = m.group(2).decode("ascii")
    if declared.lower() in _EXPAT_ENCODINGS:
        return data
    try:
        codec = codecs.lookup(declared)
    except LookupError:
        raise CapError("xml", f"unknown encoding {declared!r}") from None
    # GB2312/GBK are subsets of GB18030; decoding with the superset tolerates feeds that
    # declare GB2312 but use GBK characters (common with rare place-name characters).
    name = "gb18030" if codec.name in {"gb2312", "gbk"} else codec.name
    try:
        text = data.decode(name)
    except UnicodeDecodeError as e:
        raise CapError("xml", f"not valid {declared}: {e.reason} at byte {e.start}") from None
    # Rewrite the declaration so expat does not try to decode a second time.
    text = _XML_DECL_ENC_RE.sub(r"\1UTF-8\2", text, count=1)
    return text.encode("utf-8")


def _parse_xml(data: bytes) -> Element:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise CapError("xml", "DTD (<!DOCTYPE>) is not allowed in CAP messages") from None
    except defusedxml.EntitiesForbidden:
        raise CapError("xml", "entity declarations are not allowed") from None
    except defusedxml.ExternalReferenceForbidden:
        raise CapError("xml", "external references are not allowed") from None
    except defusedxml.DefusedXmlException as e:
        raise CapError("xml", f"forbidden XML construct: {e}") from None
    except ParseError as e:
        raise CapError("xml", f"not well-formed XML: {e}") from None
    return root


class _Reader:
    """Walks the element tree of one namespace; every error carries its field path."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def _q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    # -- generic accessors -------------------------------------------------------------

    def _text(self, el: Element, name: str, path: str, *, required: bool) -> str | None:
        found = el.findall(self._q(name))
        if len(found) > 1:
            raise CapError(f"{path}.{name}", "appears more than once")
        if not found:
            if required:
                raise CapError(f"{path}.{name}", "is required")
            return None
        text = (found[0].text or "").strip()
        if not text:
            if required:
                raise CapError(f"{path}.{name}", "is empty")
            return None
        return text

    def _req(self, el: Element, name: str, path: str) -> str:
        value = self._text(el, name, path, required=True)
        assert value is not None
        return value

    def _opt(self, el: Element, name: str, path: str) -> str | None:
        return self._text(el, name, path, required=False)

    def _all(self, el: Element, name: str) -> list[Element]:
        return el.findall(self._q(name))

    def _enum(self, value: str, allowed: frozenset[str], field: str) -> str:
        if value not in allowed:
            raise CapError(field, f"{value!r} is not one of {', '.join(sorted(allowed))}")
        return value

    def _enum_type(self, value: str, kind: type[_E], field: str) -> _E:
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise CapError(field, f"{value!r} is not one of {allowed}") from None

    def _named_values(self, el: Element, name: str, path: str) -> tuple[NamedValue, ...]:
        out: list[NamedValue] = []
        for i, item in enumerate(self._all(el, name)):
            p = f"{path}.{name}[{i}]"
            value_name = self._req(item, "valueName", p)
            value = self._opt(item, "value", p) or ""
            out.append((value_name, value))
        return tuple(out)

    # -- alert ---------------------------------------------------------------------------

    def alert(self, root: Element, version: str) -> CapMessage:
        p = "alert"
        identifier = _token(self._req(root, "identifier", p), f"{p}.identifier")
        sender = _token(self._req(root, "sender", p), f"{p}.sender")
        sent = parse_datetime(self._req(root, "sent", p), f"{p}.sent")
        status = self._enum_type(self._req(root, "status", p), AlertStatus, f"{p}.status")
        msg_type = self._enum_type(self._req(root, "msgType", p), MsgType, f"{p}.msgType")
        scope = self._enum(self._req(root, "scope", p), SCOPES, f"{p}.scope")
        refs_text = self._opt(root, "references", p)
        references = parse_references(refs_text, f"{p}.references") if refs_text else ()
        # An Update or Cancel without references cannot be tied to what it replaces; accepting
        # it would leave the original warning active while a second one is sent.
        if msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not references:
            raise CapError(f"{p}.references", f"is required for msgType {msg_type.value}")
        infos = tuple(self.info(el, f"info[{i}]") for i, el in enumerate(self._all(root, "info")))
        return CapMessage(
            identifier=identifier,
            sender=sender,
            sent=sent,
            status=status,
            msg_type=msg_type,
            scope=scope,
            references=references,
            note=self._opt(root, "note", p),
            infos=infos,
            version=version,
        )

    # -- info ----------------------------------------------------------------------------

    def info(self, el: Element, p: str) -> CapInfo:
        categories = []
        for i, cat in enumerate(self._all(el, "category")):
            text = (cat.text or "").strip()
            categories.append(self._enum(text, CATEGORIES, f"{p}.category[{i}]"))
        if not categories:
            raise CapError(f"{p}.category", "is required")
        certainty = self._req(el, "certainty", p)
        certainty = _CERTAINTY_ALIASES.get(certainty, certainty)

        def when(name: str) -> datetime | None:
            text = self._opt(el, name, p)
            return parse_datetime(text, f"{p}.{name}") if text else None

        return CapInfo(
            language=self._opt(el, "language", p) or "en-US",
            categories=tuple(categories),
            event=self._req(el, "event", p),
            urgency=self._enum(self._req(el, "urgency", p), URGENCIES, f"{p}.urgency"),
            severity=self._enum(self._req(el, "severity", p), SEVERITIES, f"{p}.severity"),
            certainty=self._enum(certainty, CERTAINTIES, f"{p}.certainty"),
            event_codes=self._named_values(el, "eventCode", p),
            effective=when("effective"),
            onset=when("onset"),
            expires=when("expires"),
            sender_name=self._opt(el, "senderName", p),
            headline=self._opt(el, "headline", p),
            description=self._opt(el, "description", p),
            instruction=self._opt(el, "instruction", p),
            parameters=self._named_values(el, "parameter", p),
            areas=tuple(
                self.area(a, f"{p}.area[{i}]") for i, a in enumerate(self._all(el, "area"))
            ),
        )

    # -- area ----------------------------------------------------------------------------

    def area(self, el: Element, p: str) -> CapArea:
        polygons = []
        for i, poly in enumerate(self._all(el, "polygon")):
            polygons.append(parse_polygon((poly.text or "").strip(), f"{p}.polygon[{i}]"))
        circles = []
        for i, circ in enumerate(self._all(el, "circle")):
            circles.append(parse_circle((circ.text or "").strip(), f"{p}.circle[{i}]"))
        return CapArea(
            area_desc=self._req(el, "areaDesc", p),
            polygons=tuple(polygons),
            circles=tuple(circles),
            geocodes=self._named_values(el, "geocode", p),
        )


# -- value syntax (public so other ingest paths can reuse them) ----------------------------


def parse_datetime(text: str, field: str) -> datetime:
    """A CAP dateTime; the zone is mandatory (a local time without zone is ambiguous)."""
    text = text.strip()
    if not _DATETIME_RE.fullmatch(text):
        raise CapError(field, f"{text!r} is not a CAP dateTime (YYYY-MM-DDThh:mm:ss±hh:mm)")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise CapError(field, f"{text!r}: {e}") from None
    return value


def parse_references(text: str, field: str) -> tuple[tuple[str, str, datetime], ...]:
    """Space-separated "sender,identifier,sent" triples."""
    out = []
    for j, triple in enumerate(text.split()):
        parts = triple.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise CapError(field, f"entry {j + 1} {triple!r} is not sender,identifier,sent")
        out.append((parts[0], parts[1], parse_datetime(parts[2], field)))
    return tuple(out)


def _lat_lon(lat_s: str, lon_s: str, field: str) -> LatLon:
    lat, lon = float(lat_s), float(lon_s)
    if not -90.0 <= lat <= 90.0:
        raise CapError(field, f"latitude {lat} out of range [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise CapError(field, f"longitude {lon} out of range [-180, 180]")
    return (lat, lon)


def parse_polygon(text: str, field: str) -> tuple[LatLon, ...]:
    """ "lat,lon lat,lon ..." — at least 4 pairs, closed (first == last)."""
    points = []
    for token in _COMMA_SPACE_RE.sub(",", text).split():
        m = _POINT_RE.fullmatch(token)
        if not m:
            raise CapError(field, f"{token!r} is not a lat,lon pair")
        points.append(_lat_lon(m.group(1), m.group(2), field))
    if len(points) < 4:
        raise CapError(field, f"needs at least 4 points, has {len(points)}")
    if points[0] != points[-1]:
        raise CapError(field, "is not closed: the first and last points differ")
    return tuple(points)


def parse_circle(text: str, field: str) -> tuple[float, float, float]:
    """ "lat,lon radius" with the radius in kilometres."""
    m = _CIRCLE_RE.fullmatch(_COMMA_SPACE_RE.sub(",", text.strip()))
    if not m:
        raise CapError(field, f"{text!r} is not 'lat,lon radius'")
    lat, lon = _lat_lon(m.group(1), m.group(2), field)
    radius = float(m.group(3))
    if radius < 0:
        raise CapError(field, f"radius {radius} km is negative")
    return (lat, lon, radius)


def _token(value: str, field: str) -> str:
    # identifier and sender are joined into "sender,identifier,sent" references, so the
    # spec forbids spaces and commas in them; a message breaking that cannot be referenced.
    if any(c.isspace() or c in ",<&" for c in value):
        raise CapError(field, f"{value!r} contains a space, comma or restricted character")
    return value
