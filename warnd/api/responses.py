"""The answer to a submitted warning, the same on every route that accepts one (the API,
feed push)."""

from __future__ import annotations

from typing import Any

from warnd.core.domain import AlertState
from warnd.engine.ingest import IngestResult


def ingest_status(r: IngestResult) -> int:
    """201 a new warning; 202 recorded but covering nothing here (nobody called); 200 already had it."""
    if not r.created:
        return 200
    return 202 if r.state == AlertState.OUT_OF_AREA else 201


def ingest_body(r: IngestResult) -> dict[str, Any]:
    return {
        "id": r.alert_id, "created": r.created, "state": r.state, "step": r.step or None, "colour": r.colour or None,
        "calls": r.calls, "deliveries": r.deliveries, "cancelled_calls": r.cancelled_calls,
        "superseded": r.superseded, "unknown_codes": r.unknown_codes, "out_of_area": r.out_of_area,
        "gaps": [{"region": g.region_code, "role": g.role, "level": g.level} for g in r.gaps],
    }
