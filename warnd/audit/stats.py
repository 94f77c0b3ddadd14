"""Small pure helpers: percentiles, rates, phone masking."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    """The usual median (mean of the two middle values for an even count); None when empty."""
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below
    it. Always one of the observed values, so an auditor can find the call it belongs to."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def mask_phone(phone: str) -> str:
    """+8613900000001 → +86 139****0001; short or odd numbers keep only their last two digits."""
    p = phone.strip()
    cc = ""
    if p.startswith("+86"):
        cc, p = "+86 ", p[3:]
    elif p.startswith("+"):
        return p[:3] + "*" * max(len(p) - 5, 0) + p[-2:] if len(p) > 5 else "*" * len(p)
    if len(p) >= 11:
        return f"{cc}{p[:3]}****{p[-4:]}"
    if len(p) > 4:
        return cc + "*" * (len(p) - 2) + p[-2:]
    return "*" * len(p)
