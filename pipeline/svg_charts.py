"""Charts as inline SVG: reports open from disk, with no script or network."""

from __future__ import annotations

import html
from typing import Mapping, Optional, Sequence, Tuple

_BAR, _ALERT = '#4a7fb5', '#c0392b'


def bar_chart(values: Mapping[str, float], unit: str = '', width: int = 640, bar_height: int = 18,
              alert_above: Optional[float] = None) -> str:
    """Horizontal bars, one per key, in the given order, scaled to the largest value;
    bars above `alert_above` in red."""
    label_width, value_width = 190, 80
    largest = max((abs(v) for v in values.values()), default=0) or 1.0
    span = width - label_width - value_width
    rows = []
    for i, (name, value) in enumerate(values.items()):
        y = i * (bar_height + 4)
        length = max(1.0, span * abs(value) / largest)
        rows.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" '
            f'fill="{_ALERT if alert_above is not None and value > alert_above else _BAR}">'
            f'<title>{html.escape(name)}: {value:.4g}{unit}</title></rect>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height - 5}">{value:.3g}{unit}</text>')
    height = len(values) * (bar_height + 4)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(rows)}</svg>')


_SERIES = ('#4a7fb5', '#e08a2c', '#3a9a5b', '#8e5bb5', '#c0392b')


def line_chart(series: Mapping[str, Sequence[Tuple[float, float]]], x_range: Tuple[float, float],
               y_range: Tuple[float, float], width: int = 420, height: int = 260, diagonal: bool = False,
               x_labels: Optional[Mapping[float, str]] = None, y_line: Optional[float] = None) -> str:
    """Points joined by lines, one colour per series (named in a legend); `diagonal` draws y = x
    (a calibration plot's ideal), `y_line` a dashed threshold, `x_labels` ticks at given x."""
    # The legend wraps: an entry is about 7 px a character.
    legend, x, row = [], 0, 0
    for name in series:
        entry = 24 + 7 * len(name)
        if x and x + entry > width - 44:
            x, row = 0, row + 1
        legend.append((name, x, row))
        x += entry
    left, right, top, bottom = 44, 12, 10, 40 + 16 * row
    height += 16 * row
    (x0, x1), (y0, y1) = x_range, y_range
    x_span, y_span = (x1 - x0) or 1.0, (y1 - y0) or 1.0

    def at(x, y):
        return (left + (x - x0) / x_span * (width - left - right),
                height - bottom - (y - y0) / y_span * (height - top - bottom))
    parts = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#bbb"/>']
    for y in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 4}" y="{at(x0, y)[1] + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for x, label in (x_labels or {x0: f'{x0:.3g}', x1: f'{x1:.3g}'}).items():
        px = at(x, y0)[0]
        anchor = 'start' if x == x0 and len(x_labels or ()) > 1 else 'end' if x == x1 else 'middle'
        parts.append(f'<text x="{px:.1f}" y="{height - bottom + 14}" text-anchor="{anchor}">{html.escape(label)}</text>')
    if diagonal:
        (ax, ay), (bx, by) = at(x0, y0), at(x1, y1)
        parts.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
    if y_line is not None:
        (ax, ay), (bx, _) = at(x0, y_line), at(x1, y_line)
        parts.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{ay:.1f}" stroke="{_ALERT}" '
                     f'stroke-dasharray="5 3"><title>threshold {y_line:.3g}</title></line>')
    for i, (name, points) in enumerate(series.items()):
        colour = _SERIES[i % len(_SERIES)]
        coords = [at(x, y) for x, y in points]
        if len(coords) > 1:
            path = ' '.join(f'{x:.1f},{y:.1f}' for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{html.escape(name)}: '
                     f'{px:.3g}, {py:.3g}</title></circle>' for (x, y), (px, py) in zip(coords, points))
        _, lx, ly = legend[i]
        parts.append(f'<text x="{left + lx}" y="{height - bottom + 32 + 16 * ly}" fill="{colour}">'
                     f'■ {html.escape(name)}</text>')
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(parts)}</svg>')


def timeline(rows: Mapping[str, Sequence[Tuple[float, float, str]]], x_range: Tuple[float, float],
             colours: Mapping[str, str], x_labels: Optional[Mapping[float, str]] = None,
             marks: Sequence[Tuple[float, str]] = (), width: int = 760, row_height: int = 22) -> str:
    """One row per key, with (start, end, kind) spans coloured by kind (a legend names the kinds),
    and `marks`: (x, title) ticks above the rows, e.g. the decisions that moved them."""
    label_width, top = 110, 14
    (x0, x1) = x_range
    span = (x1 - x0) or 1.0

    def at(x):
        return label_width + (x - x0) / span * (width - label_width - 10)
    parts = []
    for x, title in marks:
        parts.append(f'<line x1="{at(x):.1f}" y1="2" x2="{at(x):.1f}" y2="{top + len(rows) * row_height}" '
                     f'stroke="#999" stroke-dasharray="2 2"><title>{html.escape(title)}</title></line>'
                     f'<circle cx="{at(x):.1f}" cy="6" r="4" fill="#555"><title>{html.escape(title)}</title></circle>')
    for i, (name, spans) in enumerate(rows.items()):
        y = top + i * row_height
        parts.append(f'<text x="{label_width - 6}" y="{y + row_height - 8}" text-anchor="end">{html.escape(name)}</text>')
        for start, end, kind in spans:
            parts.append(f'<rect x="{at(start):.1f}" y="{y + 2}" width="{max(1.0, at(end) - at(start)):.1f}" '
                         f'height="{row_height - 6}" fill="{colours.get(kind, "#bbb")}"><title>{html.escape(name)}: '
                         f'{html.escape(kind)}</title></rect>')
    bottom = top + len(rows) * row_height
    for x, label in (x_labels or {}).items():
        anchor = 'start' if x == x0 else 'end' if x == x1 else 'middle'
        parts.append(f'<text x="{at(x):.1f}" y="{bottom + 14}" text-anchor="{anchor}">{html.escape(label)}</text>')
    legend_x = label_width
    for kind, colour in colours.items():
        parts.append(f'<text x="{legend_x}" y="{bottom + 32}" fill="{colour}">■ {html.escape(kind)}</text>')
        legend_x += 24 + 7 * len(kind)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bottom + 40}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(parts)}</svg>')
