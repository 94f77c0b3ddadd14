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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
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
MAX_ERRORS = 20  # field errors reported for one message (a broken feed can have thousands)

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
# Character encodings a CAP document may declare (Python codec names, after codecs.lookup).
# Anything else is refused by name: bytes-to-bytes codecs (base64, hex, zlib, bz2, uu),
# Python's text transforms (rot13, unicode_escape, punycode, idna) and UTF-7 have no
# business in a warning, and feeding them to a decoder either crashes or rewrites the markup.
CHARSETS = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "ascii",
     "gb2312", "gbk", "gb18030", "big5", "big5hkscs", "cp950", "shift_jis", "cp932", "euc_jp",
     "euc_kr", "cp949", "koi8-r", "koi8-u"}
    | {f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)}
    | {f"cp{n}" for n in range(1250, 1259)}
)
_WIDE = ("utf-16", "utf-32")
# Byte-order marks and, without one, the first bytes of "<?" in each wide encoding (XML 1.0
# appendix F). UTF-32 BOMs first: FF FE 00 00 also starts with the UTF-16-LE BOM.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFF = (
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
)
_ENC_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")  # XML 1.0 EncName
_XML_DECL_ENC_RE = re.compile(r"""^(\s*<\?xml\s[^>]*?encoding\s*=\s*["'])([^"'<>]*)(["'])""")

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")
# Stand-ins for values that failed their check (never returned: alert() raises instead).
_PLACEHOLDER_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_NO_REFS: tuple[tuple[str, str, datetime], ...] = ()
_NO_POINTS: tuple[LatLon, ...] = ()


class CapError(ValueError):
    """A CAP message was refused. `field` is a path like "alert.sent" or "xml".

    When the document is well-formed XML, every independent field error is collected so a
    feed operator can fix them all at once: `errors` lists each (field, detail), `field` and
    the start of `detail` are the first one's, and `detail` goes on with the others."""

    def __init__(self, field: str, detail: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.errors: tuple[tuple[str, str], ...] = tuple(errors) or ((field, detail),)

    @classmethod
    def several(cls, errors: Sequence[tuple[str, str]]) -> CapError:
        (field, detail), rest = errors[0], errors[1:MAX_ERRORS]
        text = detail + "".join(f"; {f}: {d}" for f, d in rest)
        if len(errors) > MAX_ERRORS:
            text += f"; and {len(errors) - MAX_ERRORS} more"
        return cls(field, text, errors[:MAX_ERRORS])


def parse_cap(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CapMessage:
    """Parse and validate one CAP 1.2 (or 1.1) <alert>. Raises CapError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_cap takes the raw bytes as received")
    data = bytes(data)
    # Checked before parsing so an oversized body costs nothing but this comparison.
    return cap_from_root(read_document(data, max_bytes=max_bytes))


def cap_from_root(root: Element) -> CapMessage:
    """The CAP message of an already-read document root. Raises CapError."""
    ns, local = root_name(root)
    if local != "alert":
        raise CapError("alert", f"root element is <{local}>, not a CAP <alert>")
    if ns not in CAP_NAMESPACES:
        shown = ns or "no namespace"
        raise CapError("xmlns", f"unsupported namespace {shown!r}; expected CAP 1.2 or 1.1")
    return _Reader(ns).alert(root, CAP_NAMESPACES[ns])


def read_document(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Element:
    """The root element of a warning document, read with every guard of this module (size
    before parsing, strict decoding, no DTD, entities or external references). Shared by the
    CAP and GB/T 35965.1 readers. Raises CapError."""
    if len(data) > max_bytes:
        raise CapError("size", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if not data.strip():
        raise CapError("xml", "empty document")
    return _parse_xml(_to_utf8(data))


def root_name(root: Element) -> tuple[str, str]:
    """(namespace, local name) of an element's tag."""
    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    return ns, local


def _to_utf8(data: bytes) -> bytes:
    """The document as UTF-8 with its declaration saying so: we decode it ourselves (strictly,
    in the encoding it declares or its byte-order mark shows) so expat never meets a codec
    it would hand back to Python, and errors name the encoding."""
    bom, family = 0, ""
    for mark, name in _BOMS:
        if data.startswith(mark):
            bom, family = len(mark), name
            break
    else:
        for start, name in _SNIFF:
            if data.startswith(start):
                family = name
                break
    head = data[bom:bom + 1024].decode(family or "latin-1", errors="replace")
    m = _XML_DECL_ENC_RE.match(head)
    declared = m.group(2) if m else None
    codec = family or "utf-8"
    if declared is not None:
        if not _ENC_NAME_RE.fullmatch(declared):
            raise CapError("xml", f"malformed encoding name {declared!r}")
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            raise CapError("xml", f"unknown encoding {declared!r}") from None
        if name not in CHARSETS:
            raise CapError("xml", f"encoding {declared!r} is not a character encoding for XML; "
                                  "declare UTF-8 (or UTF-16, GB18030)")
        if not _agrees(name, family):
            seen = family.upper() if family else "an 8-bit (ASCII-compatible) encoding"
            raise CapError("xml", f"declared encoding {declared!r} contradicts the document's "
                                  f"byte order mark or first bytes: {seen}")
        if not family:
            # GB2312/GBK are subsets of GB18030; decoding with the superset tolerates feeds that
            # declare GB2312 but use GBK characters (common with rare place-name characters).
            codec = "gb18030" if name in {"gb2312", "gbk"} else name
    shown = "UTF-8" if codec == "utf-8" else (declared or codec.upper())
    try:
        text = data[bom:].decode(codec)
    except UnicodeDecodeError as e:
        raise CapError("xml", f"not valid {shown}: {e.reason} at byte {bom + e.start}") from None
    if declared is not None:
        text = _XML_DECL_ENC_RE.sub(r"\1UTF-8\3", text, count=1)
    return text.encode("utf-8")


def _agrees(name: str, family: str) -> bool:
    """Does the declared codec fit what the first bytes show? ("" is an 8-bit document.)"""
    if not family:
        return not name.startswith(_WIDE)
    if family == "utf-8":
        return name == "utf-8"
    return name[:6] == family[:6]  # utf-16 with utf-16*, utf-32 with utf-32*


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
    """Walks the element tree of one namespace; every error carries its field path.

    Field checks that do not depend on each other are all made: a failed one is recorded in
    `errors` and a placeholder stands in for its value, and `alert()` raises once at the end."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.errors: list[tuple[str, str]] = []

    def _q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def _check(self, placeholder: _T, read: Callable[..., _T], *args: Any) -> _T:
        try:
            return read(*args)
        except CapError as e:
            self.errors.extend(e.errors)
            return placeholder

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
            value_name = self._check("", self._req, item, "valueName", p)
            value = self._check(None, self._opt, item, "value", p) or ""
            out.append((value_name, value))
        return tuple(out)

    # -- alert ---------------------------------------------------------------------------

    def alert(self, root: Element, version: str) -> CapMessage:
        p = "alert"
        c = self._check
        identifier = c("", lambda: _token(self._req(root, "identifier", p), f"{p}.identifier"))
        sender = c("", lambda: _token(self._req(root, "sender", p), f"{p}.sender"))
        sent = c(_PLACEHOLDER_TIME, lambda: parse_datetime(self._req(root, "sent", p), f"{p}.sent"))
        status = c(AlertStatus.ACTUAL,
                   lambda: self._enum_type(self._req(root, "status", p), AlertStatus, f"{p}.status"))
        msg_type = c(None, lambda: self._enum_type(self._req(root, "msgType", p), MsgType, f"{p}.msgType"))
        scope = c("", lambda: self._enum(self._req(root, "scope", p), SCOPES, f"{p}.scope"))
        known = len(self.errors)
        refs_text = c(None, lambda: self._opt(root, "references", p))
        references = c(_NO_REFS, parse_references, refs_text, f"{p}.references") if refs_text else _NO_REFS
        # An Update or Cancel without references cannot be tied to what it replaces; accepting
        # it would leave the original warning active while a second one is sent.
        if msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not references and len(self.errors) == known:
            assert msg_type is not None
            self.errors.append((f"{p}.references", f"is required for msgType {msg_type.value}"))
        note = c(None, lambda: self._opt(root, "note", p))
        infos = tuple(self.info(el, f"info[{i}]") for i, el in enumerate(self._all(root, "info")))
        if self.errors:
            raise CapError.several(self.errors)
        assert msg_type is not None
        return CapMessage(
            identifier=identifier,
            sender=sender,
            sent=sent,
            status=status,
            msg_type=msg_type,
            scope=scope,
            references=references,
            note=note,
            infos=infos,
            version=version,
        )

    # -- info ----------------------------------------------------------------------------

    def info(self, el: Element, p: str) -> CapInfo:
        c = self._check
        categories = []
        for i, cat in enumerate(self._all(el, "category")):
            text = (cat.text or "").strip()
            categories.append(c("", self._enum, text, CATEGORIES, f"{p}.category[{i}]"))
        if not categories:
            self.errors.append((f"{p}.category", "is required"))

        def certainty() -> str:
            value = self._req(el, "certainty", p)
            return self._enum(_CERTAINTY_ALIASES.get(value, value), CERTAINTIES, f"{p}.certainty")

        def when(name: str) -> datetime | None:
            text = c(None, lambda: self._opt(el, name, p))
            return c(None, lambda: parse_datetime(text, f"{p}.{name}") if text else None)

        def opt(name: str) -> str | None:
            return c(None, lambda: self._opt(el, name, p))

        return CapInfo(
            language=opt("language") or "en-US",
            categories=tuple(categories),
            event=c("", lambda: self._req(el, "event", p)),
            urgency=c("", lambda: self._enum(self._req(el, "urgency", p), URGENCIES, f"{p}.urgency")),
            severity=c("", lambda: self._enum(self._req(el, "severity", p), SEVERITIES, f"{p}.severity")),
            certainty=c("", certainty),
            event_codes=self._named_values(el, "eventCode", p),
            effective=when("effective"),
            onset=when("onset"),
            expires=when("expires"),
            sender_name=opt("senderName"),
            headline=opt("headline"),
            description=opt("description"),
            instruction=opt("instruction"),
            parameters=self._named_values(el, "parameter", p),
            areas=tuple(
                self.area(a, f"{p}.area[{i}]") for i, a in enumerate(self._all(el, "area"))
            ),
        )

    # -- area ----------------------------------------------------------------------------

    def area(self, el: Element, p: str) -> CapArea:
        c = self._check
        polygons = []
        for i, poly in enumerate(self._all(el, "polygon")):
            text = (poly.text or "").strip()
            polygons.append(c(_NO_POINTS, parse_polygon, text, f"{p}.polygon[{i}]"))
        circles = []
        for i, circ in enumerate(self._all(el, "circle")):
            text = (circ.text or "").strip()
            circles.append(c((0.0, 0.0, 0.0), parse_circle, text, f"{p}.circle[{i}]"))
        return CapArea(
            area_desc=c("", lambda: self._req(el, "areaDesc", p)),
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
