"""CAP 1.2 (and 1.1) and GB/T 35965.1 ingest: hardened parsing into plain values, and hazard/colour classification."""

from warnd.cap.classify import Vocabulary, build_vocabulary, classify, explicit_step
from warnd.cap.formats import parse_alert
from warnd.cap.model import CapArea, CapInfo, CapMessage
from warnd.cap.parser import CAP_NAMESPACES, CapError, parse_cap

__all__ = [
    "CAP_NAMESPACES",
    "CapArea",
    "CapError",
    "CapInfo",
    "CapMessage",
    "Vocabulary",
    "build_vocabulary",
    "classify",
    "explicit_step",
    "parse_alert",
    "parse_cap",
]
