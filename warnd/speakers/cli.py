"""`warnd speakers status`: fleet health and loudspeaker coverage per 631 step."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any


def add_cli(sub: Any, settings_of: Callable[[argparse.Namespace], Any]) -> None:
    """Register `warnd speakers ...` on the main parser's subparsers."""
    sp = sub.add_parser("speakers", help="village loudspeakers over MQTT (docs/mqtt.md)")
    sps = sp.add_subparsers(dest="speakers_command", required=True)
    st = sps.add_parser("status", help="fleet health and loudspeaker coverage per step")
    st.add_argument("--database", help="database URL (overrides the settings file)")

    def run_status(args: argparse.Namespace) -> int:
        return asyncio.run(_status(settings_of(args)))

    st.set_defaults(func=run_status)


async def _status(settings: Any) -> int:
    from warnd.clock import utcnow
    from warnd.db.engine import Database
    from warnd.speakers.coverage import coverage_by_step, fleet_health

    db = Database(settings.database.url)
    try:
        await db.upgrade()
        h = await fleet_health(db, utcnow(), settings.speakers.stale_after_seconds)
        print(f"speakers: {h.total} registered, {h.online} online, {h.offline} offline, "
              f"{h.stale} stale, {h.never_seen} never seen")
        for device, region, why in h.dark[:50]:
            print(f"  {device}  {region}  {why}")
        for step, cov in (await coverage_by_step(db)).items():
            print(f"{step}: {cov.villages_reached}/{cov.villages} villages reached by loudspeaker "
                  f"({cov.played} played, {cov.failed} failed, {cov.no_ack} no ack, {cov.expired} expired, "
                  f"{cov.late} late), {cov.fallback_calls} fallback calls ({cov.fallback_confirmed} confirmed)")
    finally:
        await db.close()
    return 0
