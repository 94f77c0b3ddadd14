"""The device sheet of a roster import (`warnd roster import`): loudspeakers by 设备编号.

A sheet whose header holds 设备编号 and 行政区划代码 (or 所属村组) is a device sheet (aliases in
config/roster-headers.toml, [speakers]). Each row is all or nothing, like people: a row with
any problem is rejected with its row number, the good rows are upserted by device id.
Re-importable: an unchanged row changes nothing; an absent optional column leaves the stored
value alone; 在岗/启用 = 否 retires a device (it gets no more commands).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import Level
from warnd.db.models import Speaker
from warnd.roster.cells import normalise_code, parse_active, parse_point
from warnd.roster.problems import LEVEL_ZH, CellError, Problem, problem

_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CAPS = {"tts": "tts", "文本": "tts", "文字": "tts", "语音合成": "tts", "文本转语音": "tts", "文转语": "tts",
         "audio": "audio", "音频": "audio", "录音": "audio", "音频url": "audio", "音频文件": "audio"}


def parse_capabilities(text: str) -> list[str]:
    if not text.strip():
        return ["tts"]
    out: list[str] = []
    for part in re.split(r"[,，、;；/\s+]+", text.strip()):
        if not part:
            continue
        cap = _CAPS.get(part.casefold())
        if cap is None:
            raise CellError(problem("capability_unknown", part, capabilities="能力"))
        if cap not in out:
            out.append(cap)
    return out or ["tts"]


@dataclass
class SpeakerRow:
    sheet: str
    row: int
    device_id: str
    region_code: str
    capabilities: list[str] | None  # None: column absent
    lon: float | None
    lat: float | None
    set_point: bool
    active: bool


def parse_speaker(cells_of: Callable[[str], str], has: Callable[[str], bool], sheet: str, number: int,
                  known: dict[str, Level], find_place: Callable[[str], set[str]],
                  label: Callable[[str], str] = lambda f: f) -> tuple[SpeakerRow | None, list[Problem]]:
    """One device row. `known`: region code → level (database and this file)."""
    reasons: list[Problem] = []
    device_id = cells_of("device_id").strip()
    if not device_id:
        reasons.append(problem("device_missing", device_id=label("device_id")))
    elif not _DEVICE_ID.fullmatch(device_id):
        reasons.append(problem("device_bad", device_id, device_id=label("device_id")))
    region: str | None = None
    code_text, place_text = cells_of("region_code"), cells_of("place")
    if code_text:
        try:
            region = normalise_code(code_text, label("region_code"))
        except CellError as e:
            reasons.append(e.problem)
        if region is not None and region not in known:
            reasons.append(problem("region_unknown", region, region_code=label("region_code")))
            region = None
    elif place_text:
        found = find_place(place_text)
        if len(found) == 1:
            region = next(iter(found))
        elif found:
            reasons.append(problem("place_ambiguous", place_text, region_code=label("region_code")))
        else:
            reasons.append(problem("place_unknown", place_text))
    else:
        reasons.append(problem("region_missing", region_code=label("region_code"), place=label("place")))
    if region is not None and known[region] not in (Level.VILLAGE, Level.GROUP):
        reasons.append(problem("speaker_level", region, have=LEVEL_ZH[known[region]]))
        region = None
    caps: list[str] | None = None
    if has("capabilities"):
        try:
            caps = parse_capabilities(cells_of("capabilities"))
        except CellError as e:
            reasons.append(e.problem)
    lon = lat = None
    try:
        if parse_point(cells_of("lon"), cells_of("lat")) is not None:
            lon, lat = float(cells_of("lon")), float(cells_of("lat"))
    except CellError as e:
        reasons.append(e.problem)
    try:
        active = parse_active(cells_of("active"), label("active"))
    except CellError as e:
        active = True
        reasons.append(e.problem)
    if reasons or region is None:
        return None, reasons
    return SpeakerRow(sheet, number, device_id, region, caps, lon, lat, has("lon") or has("lat"), active), reasons


async def apply_speakers(s: AsyncSession, rows: list[SpeakerRow], now: datetime) -> tuple[int, int, int]:
    """Upsert accepted rows. Returns (added, updated, unchanged)."""
    existing = {sp.device_id: sp for sp in (await s.exec(select(Speaker))).all()}
    added, updated, unchanged = 0, 0, 0
    new: list[dict[str, Any]] = []
    for r in rows:
        values: dict[str, Any] = {"region_code": r.region_code, "active": r.active}
        if r.capabilities is not None:
            values["capabilities"] = r.capabilities
        if r.set_point:
            values.update(lon=r.lon, lat=r.lat)
        cur = existing.get(r.device_id)
        if cur is None:
            new.append({"capabilities": ["tts"], "lon": None, "lat": None, "online": None, "state_reason": None,
                        "state_at": None, "last_seen_at": None, **values, "device_id": r.device_id,
                        "updated_at": now})
            added += 1
            continue
        changed = False
        for k, v in values.items():
            if getattr(cur, k) != v:
                setattr(cur, k, v)
                changed = True
        if changed:
            cur.updated_at = now
            updated += 1
        else:
            unchanged += 1
    if new:
        await (await s.connection()).execute(insert(Speaker), new)
    return added, updated, unchanged
