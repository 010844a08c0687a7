"""A tiny server-side SVG line chart: no JavaScript library, no CDN, works offline.

Values are money (Decimal); they are turned into float only to place pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ordermanager.core.decimals import plain_decimal

PALETTE = ("#1f6feb", "#2da44e", "#cf222e", "#8250df")
MARKERS_UP_TO = 31  # series with at most this many points get a dot per point (a month of days)
CHAR_WIDTH = 7.2  # generous average advance of a 12px sans-serif character, for legend layout


def legend_width(label: str) -> float:
    return len(label) * CHAR_WIDTH


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[datetime, Decimal]]


def svg_line_chart(series: list[Series], *, width: int = 720, height: int = 220, title: str = "") -> SafeString:
    points = [p for s in series for p in s.points]
    if not points:
        return mark_safe(f'<p class="chart-empty">{escape(title)}: no data yet.</p>')
    times = [p[0].timestamp() for p in points]
    values = [float(p[1]) for p in points]  # pixels only
    t0, t1 = min(times), max(times)
    v0, v1 = min(values + [0.0]), max(values + [0.0])
    span_t, span_v = (t1 - t0) or 1.0, (v1 - v0) or 1.0
    pad_l, pad_r, pad_t, pad_b = 70, 10, 20, 24
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(when: datetime, value: Decimal) -> str:
        x = pad_l + ((when.timestamp() - t0) / span_t * plot_w if t1 > t0 else plot_w / 2)  # one instant: centred
        y = pad_t + (v1 - float(value)) / span_v * plot_h
        return f"{x:.1f},{y:.1f}"

    zero_y = pad_t + v1 / span_v * plot_h
    parts = [
        f'<svg class="pnl-chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title>{escape(title)}</title>',
        f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{zero_y:.1f}" y2="{zero_y:.1f}" stroke="#999" '
        f'stroke-dasharray="4 3"/>',
        f'<text x="{pad_l - 6}" y="{pad_t + 4}" text-anchor="end" font-size="11">{_fmt(v1)}</text>',
        f'<text x="{pad_l - 6}" y="{height - pad_b}" text-anchor="end" font-size="11">{_fmt(v0)}</text>',
        f'<text x="{pad_l}" y="{height - 6}" font-size="11">{_when(t0)}</text>',
        f'<text x="{width - pad_r}" y="{height - 6}" text-anchor="end" font-size="11">{_when(t1)}</text>',
    ]
    legend_x = pad_l + 8
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        coords = [xy(when, value) for when, value in s.points]
        if len(coords) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(coords)}"/>')
        if len(coords) <= MARKERS_UP_TO:  # one point (or a few) would otherwise draw nothing visible
            for c in coords:
                x, y = c.split(",")
                parts.append(f'<circle class="point" cx="{x}" cy="{y}" r="3" fill="{color}"/>')
        # Legend entries side by side, each as wide as its text (estimated), so labels never overlap.
        parts.append(f'<rect x="{legend_x}" y="{pad_t - 15}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text class="legend" x="{legend_x + 14}" y="{pad_t - 6}" font-size="12" fill="{color}">'
                     f'{escape(s.label)}</text>')
        legend_x += 14 + legend_width(s.label) + 18
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _fmt(value: float) -> str:
    return escape(plain_decimal(Decimal(str(round(value, 2)))))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")
