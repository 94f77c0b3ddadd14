"""Charts of the HTML report, drawn as inline SVG by hand: no script, no font or library
from a CDN, so the report opens offline and prints as it shows. Pure: data in, markup out.

Every function returns one `<svg class="chart …">` element (or "" when there is nothing to
draw); text is escaped here, so the template may insert the result as is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any

FONT = "'Noto Sans CJK SC','Source Han Sans SC','WenQuanYi Micro Hei','Microsoft YaHei',sans-serif"
STEP_COLOURS = {"forecast": "#1565c0", "warning": "#ef6c00", "imminent": "#c62828"}
OTHER_COLOURS = ("#6a1b9a", "#00838f", "#558b2f")
MAP_COLOURS = {"confirmed": "#2e7d32", "reached": "#f9a825", "not_reached": "#c62828",
               "not_targeted": "#cfd8dc"}
GOOD, BAD, GRID, INK, MUTED = "#2e7d32", "#c62828", "#e0e0e0", "#212121", "#616161"
HIST_BINS = (0, 1, 2, 3, 5, 10, 15, 30)  # minutes; the last bin is open-ended


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _svg(kind: str, width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'aria-label="{escape(label)}" viewBox="0 0 {width} {height}" width="100%" '
            f'style="max-width:{width}px;font-family:{FONT}">' + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, *, size: int = 12, anchor: str = "start", fill: str = INK,
          cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text{c} x="{_f(x)}" y="{_f(y)}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}">{escape(s)}</text>')


def nice_ceiling(n: int, lines: int = 4) -> int:
    """The axis top for counts up to n: `lines` grid lines at a round whole step (1, 2, 5 × 10^k)."""
    need = max(n, 1) / lines
    step = next(m * 10**k for k in range(12) for m in (1, 2, 5) if m * 10**k >= need)
    return step * lines


def step_colour(step: str, i: int) -> str:
    return STEP_COLOURS.get(step, OTHER_COLOURS[i % len(OTHER_COLOURS)])


def _time_ticks(t0: datetime, t1: datetime, want: int = 6) -> list[datetime]:
    span = max((t1 - t0).total_seconds() / 60, 1)
    step = next((m for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440) if span / m <= want), 2880)
    first = t0.replace(second=0, microsecond=0)
    minute_of_day = first.hour * 60 + first.minute
    first += timedelta(minutes=(-minute_of_day) % step)
    out, t = [], first
    while t <= t1:
        out.append(t)
        t += timedelta(minutes=step)
    return out


def timeline(steps: dict[str, Any], tz: timezone, *, label: str, legend_total: str = "人",
             width: int = 720, height: int = 300) -> str:
    """Cumulative share of each step's calls confirmed, over (local) clock time."""
    series = [(k, v) for k, v in steps.items() if v.get("calls")]
    if not series:
        return ""
    starts = [v["start"] for _, v in series]
    ends = [t for _, v in series for t in v["confirmed_at"]] + starts
    t0, t1 = min(starts), max(ends)
    t1 = max(t1 + (t1 - t0) / 20, t0 + timedelta(minutes=10))  # room after the last confirmation
    left, right, top, bottom = 52, 200, 16, 40
    pw, ph = width - left - right, height - top - bottom

    def x(t: datetime) -> float:
        return left + pw * (t - t0).total_seconds() / (t1 - t0).total_seconds()

    def y(share: float) -> float:
        return top + ph * (1 - share)

    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="{GRID}"/>']
    for share in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(y(share))}" y2="{_f(y(share))}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y(share) + 4, f"{round(share * 100)}%", size=11, anchor="end", fill=MUTED))
    for t in _time_ticks(t0, t1):
        body.append(f'<line x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top + ph}" y2="{top + ph + 4}" stroke="{MUTED}"/>')
        body.append(_text(x(t), top + ph + 18, t.astimezone(tz).strftime("%H:%M"), size=11, anchor="middle",
                          fill=MUTED))
    for i, (step, v) in enumerate(series):
        colour = step_colour(step, i)
        n = v["calls"]
        pts = [(x(v["start"]), y(0))]
        for k, t in enumerate(v["confirmed_at"], start=1):
            pts.append((x(t), pts[-1][1]))
            pts.append((x(t), y(k / n)))
        pts.append((x(t1), pts[-1][1]))
        d = "M" + " L".join(f"{_f(px)},{_f(py)}" for px, py in pts)
        done = len(v["confirmed_at"])
        body.append(f'<path class="line" data-step="{escape(step)}" d="{d}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"><title>{escape(v["label"])}: {done}/{n}</title></path>')
        ly = top + 14 + i * 22
        body.append(f'<rect x="{left + pw + 12}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        body.append(_text(left + pw + 30, ly + 1, f"{v['label']} {done}/{n}{legend_total}", size=12))
    return _svg("timeline", width, height, label, body)


def histogram(steps: dict[str, Any], *, label: str, unit: str = "分钟", width: int = 720, height: int = 260) -> str:
    """Minutes to confirm, binned, one bar per step in each bin."""
    series = [(k, v) for k, v in steps.items() if v.get("minutes")]
    if not series:
        return ""
    counts = []
    for _, v in series:
        c = [0] * len(HIST_BINS)
        for m in v["minutes"]:
            i = max(j for j, lo in enumerate(HIST_BINS) if m >= lo) if m >= 0 else 0
            c[i] += 1
        counts.append(c)
    top_n = nice_ceiling(max(max(c) for c in counts))
    left, right, top, bottom = 44, 200, 16, 44
    pw, ph = width - left - right, height - top - bottom
    group = pw / len(HIST_BINS)
    bar = (group - 8) / len(series)
    body = [f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{MUTED}"/>']
    for k in range(0, 5):
        v = top_n * k / 4
        yy = top + ph - ph * k / 4
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="{GRID}"/>')
        body.append(_text(left - 6, yy + 4, str(round(v)), size=11, anchor="end", fill=MUTED))
    for j, lo in enumerate(HIST_BINS):
        hi = HIST_BINS[j + 1] if j + 1 < len(HIST_BINS) else None
        name = f"{lo}–{hi}" if hi is not None else f"≥{lo}"
        body.append(_text(left + group * j + group / 2, top + ph + 16, name, size=11, anchor="middle", fill=MUTED))
        for i, ((step, v), c) in enumerate(zip(series, counts, strict=True)):
            h = ph * c[j] / top_n
            bx = left + group * j + 4 + bar * i
            body.append(f'<rect class="bar" x="{_f(bx)}" y="{_f(top + ph - h)}" width="{_f(max(bar - 1, 1))}" '
                        f'height="{_f(h)}" fill="{step_colour(step, i)}"><title>{escape(v["label"])} '
                        f'{escape(name)}{unit}: {c[j]}</title></rect>')
    body.append(_text(left + pw / 2, height - 6, unit, size=11, anchor="middle", fill=MUTED))
    for i, (step, v) in enumerate(series):
        ly = top + 14 + i * 22
        body.append(f'<rect x="{left + pw + 12}" y="{ly - 9}" width="12" height="12" fill="{step_colour(step, i)}"/>')
        body.append(_text(left + pw + 30, ly + 1, f"{v['label']} ({len(v['minutes'])})", size=12))
    return _svg("histogram", width, height, label, body)


def coverage_bars(rows: Sequence[dict[str, Any]], target: float, *, label: str, target_label: str,
                  width: int = 720) -> str:
    """Coverage rate per township, a bar each, with the target as a dashed line."""
    rows = [r for r in rows if r.get("coverage") is not None]
    if not rows:
        return ""
    left, right, top, row_h = 120, 70, 24, 24
    height = top + row_h * len(rows) + 28
    pw = width - left - right

    def x(share: float) -> float:
        return left + pw * share

    body = []
    for share in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{_f(x(share))}" x2="{_f(x(share))}" y1="{top - 4}" y2="{top + row_h * len(rows)}" '
                    f'stroke="{GRID}"/>')
        body.append(_text(x(share), height - 8, f"{round(share * 100)}%", size=11, anchor="middle", fill=MUTED))
    for i, r in enumerate(rows):
        yy = top + row_h * i
        share = float(r["coverage"])
        colour = GOOD if share >= target else BAD
        body.append(_text(left - 8, yy + 16, str(r["township"]), size=12, anchor="end"))
        body.append(f'<rect class="bar" x="{left}" y="{yy + 4}" width="{_f(max(pw * share, 1))}" height="{row_h - 8}" '
                    f'fill="{colour}"><title>{escape(str(r["township"]))}: {r["units_reached"]}/{r["units"]}'
                    f'</title></rect>')
        body.append(_text(x(share) + 6, yy + 16, f"{share * 100:.1f}%", size=11, fill=MUTED))
    body.append(f'<line class="target" x1="{_f(x(target))}" x2="{_f(x(target))}" y1="{top - 8}" '
                f'y2="{top + row_h * len(rows)}" stroke="{INK}" stroke-dasharray="4 3"/>')
    body.append(_text(x(target), top - 10, f"{target_label} {target * 100:g}%", size=11, anchor="middle"))
    return _svg("coverage", width, height, label, body)


def _rings(geom: Any) -> list[list[tuple[float, float]]]:
    if geom.geom_type == "Polygon":
        return [list(geom.exterior.coords)] + [list(r.coords) for r in geom.interiors]
    if geom.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [ring for g in geom.geoms for ring in _rings(g)]
    return []


def village_map(features: Sequence[dict[str, Any]], *, label: str, legend: dict[str, str],
                width: int = 720) -> str:
    """Villages drawn from their WKT (polygons, or a dot for a point), coloured by status."""
    from shapely import wkt
    from shapely.errors import ShapelyError

    shapes = []
    for f in features:
        try:
            g = wkt.loads(f["wkt"])
        except (ShapelyError, ValueError, TypeError):
            continue  # a broken geometry is skipped, not a broken report
        if not g.is_empty:
            shapes.append((f, g))
    if not shapes:
        return ""
    xs0, ys0, xs1, ys1 = zip(*(g.bounds for _, g in shapes), strict=True)
    minx, miny, maxx, maxy = min(xs0), min(ys0), max(xs1), max(ys1)
    kx = math.cos(math.radians((miny + maxy) / 2))  # keep a kilometre a kilometre across
    spanx, spany = max((maxx - minx) * kx, 1e-6), max(maxy - miny, 1e-6)
    pad, legend_w = 12, 150
    pw = width - 2 * pad - legend_w
    scale = pw / spanx
    ph = min(spany * scale, 420.0)
    scale = min(scale, ph / spany)
    height = int(ph + 2 * pad)

    def pt(lon: float, lat: float) -> str:
        return f"{_f(pad + (lon - minx) * kx * scale)},{_f(pad + (maxy - lat) * scale)}"

    body = [f'<rect x="0" y="0" width="{width - legend_w}" height="{height}" fill="#f5f7f8"/>']
    names: list[str] = []  # drawn last, above every shape
    for f, g in shapes:
        colour = MAP_COLOURS.get(f["status"], MAP_COLOURS["not_targeted"])
        title = f'<title>{escape(f["name"])}（{escape(legend.get(f["status"], f["status"]))}）</title>'
        attrs = f'class="village" data-code="{escape(f["code"])}" data-status="{escape(f["status"])}"'
        if g.geom_type == "Point":
            cx, cy = pt(g.x, g.y).split(",")
            body.append(f'<circle {attrs} cx="{cx}" cy="{cy}" r="6" fill="{colour}" stroke="#fff">{title}</circle>')
            names.append(_text(float(cx) + 9, float(cy) + 4, f["name"], size=11))
            continue
        d = " ".join("M" + " L".join(pt(x, y) for x, y, *_ in ring) + " Z" for ring in _rings(g))
        body.append(f'<path {attrs} d="{d}" fill="{colour}" fill-rule="evenodd" stroke="#fff" '
                    f'stroke-width="1">{title}</path>')
        x0, _, x1, _ = g.bounds
        if (x1 - x0) * kx * scale >= 12 * len(f["name"]):  # the name fits inside
            c = g.representative_point()
            lx, ly = (float(v) for v in pt(c.x, c.y).split(","))
            names.append(_text(lx, ly + 4, f["name"], size=11, anchor="middle"))
    body += names
    for i, (status, text) in enumerate(legend.items()):
        ly = pad + 14 + i * 22
        body.append(f'<rect x="{width - legend_w + 10}" y="{ly - 10}" width="12" height="12" '
                    f'fill="{MAP_COLOURS.get(status, MAP_COLOURS["not_targeted"])}"/>')
        body.append(_text(width - legend_w + 28, ly, text, size=12))
    return _svg("map", width, max(height, pad + 22 * len(legend) + 10), label, body)
