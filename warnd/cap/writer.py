"""Writing a CAP 1.2 document from cap/model.py values: the inverse of warnd.cap.parser, for
warnings warnd itself originates (the console's 发布预警). Pure; the result parses back with
parse_cap to the same values."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, register_namespace, tostring

from warnd.cap.model import CapArea, CapInfo, CapMessage

NS = "urn:oasis:names:tc:emergency:cap:1.2"
register_namespace("", NS)


def cap_time(t: datetime) -> str:
    """CAP dateTime: seconds, explicit zone (UTC written as +00:00)."""
    return t.astimezone(UTC).replace(microsecond=0).isoformat()


def _el(parent: Element, name: str, text: str | None) -> None:
    if text is not None and text != "":
        SubElement(parent, f"{{{NS}}}{name}").text = text


def _named(parent: Element, name: str, pairs: tuple[tuple[str, str], ...]) -> None:
    for value_name, value in pairs:
        e = SubElement(parent, f"{{{NS}}}{name}")
        _el(e, "valueName", value_name)
        _el(e, "value", value)


def _area(parent: Element, area: CapArea) -> None:
    a = SubElement(parent, f"{{{NS}}}area")
    _el(a, "areaDesc", area.area_desc)
    for ring in area.polygons:
        _el(a, "polygon", " ".join(f"{lat:g},{lon:g}" for lat, lon in ring))
    for lat, lon, radius in area.circles:
        _el(a, "circle", f"{lat:g},{lon:g} {radius:g}")
    _named(a, "geocode", area.geocodes)


def _info(parent: Element, info: CapInfo) -> None:
    i = SubElement(parent, f"{{{NS}}}info")
    _el(i, "language", info.language)
    for c in info.categories:
        _el(i, "category", c)
    _el(i, "event", info.event)
    _el(i, "urgency", info.urgency)
    _el(i, "severity", info.severity)
    _el(i, "certainty", info.certainty)
    _named(i, "eventCode", info.event_codes)
    for name, t in (("effective", info.effective), ("onset", info.onset), ("expires", info.expires)):
        if t is not None:
            _el(i, name, cap_time(t))
    _el(i, "senderName", info.sender_name)
    _el(i, "headline", info.headline)
    _el(i, "description", info.description)
    _el(i, "instruction", info.instruction)
    _named(i, "parameter", info.parameters)
    for area in info.areas:
        _area(i, area)


def cap_document(msg: CapMessage) -> bytes:
    root = Element(f"{{{NS}}}alert")
    _el(root, "identifier", msg.identifier)
    _el(root, "sender", msg.sender)
    _el(root, "sent", cap_time(msg.sent))
    _el(root, "status", msg.status.value)
    _el(root, "msgType", msg.msg_type.value)
    _el(root, "scope", msg.scope)
    _el(root, "note", msg.note)
    if msg.references:
        _el(root, "references", " ".join(f"{s},{i},{cap_time(t)}" for s, i, t in msg.references))
    for info in msg.infos:
        _info(root, info)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode").encode("utf-8")
