"""One entry point for every warning document warnd accepts: OASIS CAP 1.2/1.1
(warnd.cap.parser) and GB/T 35965.1-2018 (warnd.cap.gbt), told apart by the document
itself (root element and namespace), never by the route it came in on. Pure: no I/O."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from warnd.cap.gbt import gbt_from_root, is_gbt
from warnd.cap.model import CapMessage
from warnd.cap.parser import (
    CAP_NAMESPACES,
    DEFAULT_MAX_BYTES,
    CapError,
    cap_from_root,
    read_document,
    root_name,
)


def parse_alert(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CapMessage:
    """Parse a CAP or GB/T 35965.1 warning. Raises CapError (the caller answers 4xx)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_alert takes the raw bytes as received")
    return from_root(read_document(bytes(data), max_bytes=max_bytes))


def from_root(root: Element) -> CapMessage:
    if is_gbt(root):
        return gbt_from_root(root)
    ns, local = root_name(root)
    if local == "alert" and ns not in CAP_NAMESPACES:
        raise CapError("xmlns", f"unsupported namespace {ns!r}; expected CAP 1.2 or 1.1, or GB/T 35965.1 "
                                "(<alert> with no namespace)")
    return cap_from_root(root)


def is_warning_root(el: Element) -> bool:
    """Is this element a warning document warnd reads (for feeds embedding one)?"""
    ns, local = root_name(el)
    return local == "alert" and (ns in CAP_NAMESPACES or is_gbt(el))
