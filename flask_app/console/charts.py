"""Charts as inline SVG, drawn on the server: no script, no library, every label escaped.

Colours come from the console's stylesheet through class names, so the
Content-Security-Policy needs no inline styles. Hovering a bar or a point
shows its figures (an SVG ``<title>``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 30


@dataclass
class Series:
    label: str
    values: Sequence[float | None]
    css: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _frame(width: int, height: int, y_max: float, unit: str, label: str,
           series: Sequence[Series], y_format: Callable[[float], str]) -> list[str]:
    plot_h = height - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(label)}</title>"]
    for step in range(5):
        y = TOP + plot_h - plot_h * step / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(y_format(y_max * step / 4))}{escape(unit)}</text>")
    x = width - RIGHT
    for item in reversed(series):
        text_width = 7 * len(item.label) + 18
        x -= text_width
        parts.append(f'<rect class="swatch {escape(item.css)}" x="{x}" y="6" width="10" height="10" rx="2"/>'
                     f'<text class="legend" x="{x + 14}" y="15">{escape(item.label)}</text>')
    return parts


def time_chart(since: dt.datetime, until: dt.datetime, bucket_seconds: int, starts: Sequence[dt.datetime],
               series: Sequence[Series], *, label: str, kind: str = "bars", stacked: bool = False,
               unit: str = "", width: int = 760, height: int = 220,
               y_format: Callable[[float], str] = _format) -> Markup:
    """Values per time bucket: bars (side by side or stacked) or lines; empty buckets stay empty."""
    total = (until - since).total_seconds()
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    if stacked:
        peak = max((sum(v or 0 for v in column) for column in zip(*(s.values for s in series), strict=True)),
                   default=0)
    else:
        peak = max((v for s in series for v in s.values if v is not None), default=0)
    y_max = nice_ceiling(peak)
    parts = _frame(width, height, y_max, unit, label, series, y_format)

    def x_of(moment: dt.datetime) -> float:
        return LEFT + plot_w * (moment - since).total_seconds() / total

    def y_of(value: float) -> float:
        return TOP + plot_h - plot_h * value / y_max

    slot = plot_w * bucket_seconds / total
    for tick in range(7):
        moment = since + (until - since) * tick / 6
        parts.append(f'<text class="tick" x="{x_of(moment):.1f}" y="{height - 10}" text-anchor="middle">'
                     f"{moment:%H:%M}</text>")
    if not starts:
        parts.append(f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
                     "No requests in this range</text>")
    elif kind == "bars":
        bar_w = max(slot * 0.8 / (1 if stacked else len(series)), 1.0)
        for index, start in enumerate(starts):
            base = 0.0
            for number, item in enumerate(series):
                value = item.values[index]
                if not value:
                    continue
                x = x_of(start) + slot * 0.1 + (0 if stacked else number * bar_w)
                bottom = base if stacked else 0.0
                top = bottom + value
                parts.append(
                    f'<rect class="bar {escape(item.css)}" x="{x:.2f}" y="{y_of(top):.2f}" width="{bar_w:.2f}" '
                    f'height="{max(y_of(bottom) - y_of(top), 0.5):.2f}"><title>{start:%H:%M} UTC: '
                    f"{escape(_format(value))}{escape(unit)} {escape(item.label)}</title></rect>")
                if stacked:
                    base = top
    else:
        for item in series:
            points = [(x_of(start) + slot / 2, y_of(value), start, value)
                      for start, value in zip(starts, item.values, strict=True) if value is not None]
            if not points:
                continue
            # A line joins neighbouring buckets only: a gap (no requests) stays a gap.
            path, previous = [], None
            for x, y, start, _ in points:
                joined = previous is not None and (start - previous).total_seconds() <= bucket_seconds
                path.append(f"{'L' if joined else 'M'}{x:.2f},{y:.2f}")
                previous = start
            parts.append(f'<path class="line {escape(item.css)}" d="{" ".join(path)}"/>')
            for x, y, start, value in points:
                parts.append(f'<circle class="dot {escape(item.css)}" cx="{x:.2f}" cy="{y:.2f}" r="2.5">'
                             f"<title>{start:%H:%M} UTC: {escape(y_format(value))}{escape(unit)} "
                             f"{escape(item.label)}</title></circle>")
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{width - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above is escaped


def distribution_chart(labels: Sequence[str], training: Sequence[float], recent: Sequence[float], *,
                       label: str, width: int = 380, height: int = 170) -> Markup:
    """Training and recent shares per bin, side by side."""
    series = [Series("training", training, "training"), Series("recent", recent, "recent")]
    y_max = nice_ceiling(max([*training, *recent, 0.0]))
    parts = _frame(width, height, y_max, "%", label, series, lambda value: f"{value * 100:.3g}")
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.4
    for index, bin_label in enumerate(labels):
        for number, item in enumerate(series):
            value = item.values[index]
            x = LEFT + index * slot + slot * 0.1 + number * bar_w
            h = plot_h * value / y_max
            parts.append(f'<rect class="bar {item.css}" x="{x:.2f}" y="{TOP + plot_h - h:.2f}" width="{bar_w:.2f}" '
                         f'height="{max(h, 0.5 if value else 0):.2f}"><title>{escape(bin_label)}: '
                         f"{value * 100:.1f}% of {item.label} rows</title></rect>")
    shown = range(len(labels)) if len(labels) <= 8 else (0, len(labels) - 1)
    for index in shown:
        text = labels[index] if len(labels) <= 8 else labels[index].split(" – ")[0 if index == 0 else 1]
        anchor = "middle" if len(labels) <= 8 else ("start" if index == 0 else "end")
        x = LEFT + index * slot + slot / 2 if len(labels) <= 8 else (LEFT if index == 0 else LEFT + plot_w)
        parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">{escape(text)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{width - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above is escaped
