"""Charts as inline SVG: pages open from disk, with no script or network.

Drawings, so built here as SVG text rather than in templates; every text
drawn is escaped. Where a directed graph's boxes go is `reports.graph_layout`.
"""

from __future__ import annotations

import html
from typing import Mapping, Optional, Sequence, Tuple

from reports import graph_layout
from reports.formatting import finite

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
_MARKS = (_ALERT, '#555', '#3a9a5b')


def grouped_bar_chart(groups: Mapping[str, Mapping[str, Optional[float]]], series: Sequence[str],
                      x_max: Optional[float] = None, marks: Mapping[str, float] = None,
                      muted: Sequence[str] = (), muted_note: str = '', width: int = 520,
                      bar_height: int = 9) -> str:
    """Horizontal bars grouped by key, in the given order: one bar per series (a colour each, named in
    a legend) on one scale from 0 to `x_max` (default the largest value). A missing or NaN value gets
    no bar and reads 'n/a'. `marks`: dashed vertical lines at named values (a threshold, the overall
    value); keys in `muted` are drawn faded, `muted_note` says why in the legend."""
    marks = dict(marks or {})
    present = [v for g in groups.values() for v in g.values() if finite(v) is not None]
    largest = x_max or max(present + list(marks.values()) + [0]) or 1.0
    # About 7 px a character at 12 px: room for the longest key, within reason.
    label_width = min(240, 12 + 7 * max((len(k) for k in groups), default=4))
    # A line of text above the bars per mark: two close marks never print over each other.
    value_width, top, group_gap = 40, 4 + 14 * len(marks), 7
    span = width - label_width - value_width
    group_height = len(series) * bar_height + group_gap

    def at(value):
        return label_width + span * min(value, largest) / largest
    parts = []
    for i, (key, values) in enumerate(groups.items()):
        y = top + i * group_height
        label_fill, bar_opacity = ('#999', '0.35') if key in muted else ('#222', '1')
        parts.append(f'<text x="{label_width - 6}" y="{y + len(series) * bar_height / 2 + 4:.1f}" '
                     f'text-anchor="end" fill="{label_fill}">{html.escape(key)}</text>')
        for j, name in enumerate(series):
            value, bar_y = values.get(name), y + j * bar_height
            if finite(value) is None:
                parts.append(f'<text x="{label_width + 4}" y="{bar_y + bar_height - 1}" fill="#999" '
                             f'font-size="9">n/a</text>')
                continue
            parts.append(f'<rect x="{label_width}" y="{bar_y}" width="{max(1.0, at(value) - label_width):.1f}" '
                         f'height="{bar_height - 1}" fill="{_SERIES[j % len(_SERIES)]}" '
                         f'fill-opacity="{bar_opacity}"><title>{html.escape(key)}, '
                         f'{html.escape(name)}: {value:.4g}</title></rect>'
                         f'<text x="{at(value) + 4:.1f}" y="{bar_y + bar_height - 1}" font-size="9">{value:.3g}</text>')
    bottom = top + len(groups) * group_height
    for k, (name, value) in enumerate(marks.items()):
        colour, x, y = _MARKS[k % len(_MARKS)], at(value), 13 + 14 * k
        # The label on the side with room: left of a line in the right half, else right of it.
        anchor = 'end' if x > label_width + span / 2 else 'start'
        parts.append(f'<line x1="{x:.1f}" y1="{top - 3}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}" '
                     f'stroke-dasharray="4 3"><title>{html.escape(name)}: {value:.4g}</title></line>'
                     f'<text x="{x + (-3 if anchor == "end" else 3):.1f}" y="{y}" text-anchor="{anchor}" '
                     f'fill="{colour}">{html.escape(name)} {value:.3g}</text>')
    legend = [(name, _SERIES[j % len(_SERIES)]) for j, name in enumerate(series)]
    if muted and muted_note:
        legend.append((muted_note, '#bbb'))
    x, row = label_width, 0
    for name, colour in legend:
        entry = 24 + 7 * len(name)
        if x > label_width and x + entry > width:
            x, row = label_width, row + 1
        parts.append(f'<text x="{x}" y="{bottom + 16 + 16 * row}" fill="{colour}">■ {html.escape(name)}</text>')
        x += entry
    height = bottom + 24 + 16 * row
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(parts)}</svg>')


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


def paired_bar_chart(values: Mapping[str, Tuple[Optional[float], Optional[float]]],
                     names: Tuple[str, str] = ('A', 'B'), **options) -> str:
    """Two bars per key, (a, b): the same measure of two things side by side, `names` in the legend
    (two different names). `grouped_bar_chart` with two series; `options` go to it (x_max, marks, width)."""
    return grouped_bar_chart({key: dict(zip(names, pair)) for key, pair in values.items()}, list(names), **options)


# Colours of interval_chart's kinds of row.
INTERVAL_KINDS = {'estimated': _BAR, 'realised': '#e08a2c', 'reference': '#777'}


def interval_chart(rows: Mapping[str, Tuple[Optional[float], Optional[Tuple[float, float]], str]],
                   x_range: Tuple[float, float], marks: Optional[Mapping[str, float]] = None, width: int = 560,
                   row_height: int = 22) -> str:
    """One row per key, in the given order: (value, 95% interval or None, kind) drawn as a dot on a
    horizontal whisker, coloured by kind (INTERVAL_KINDS, named in a legend), on one scale over `x_range`;
    a missing value reads 'n/a'. `marks`: dashed vertical lines at named values (a minimum)."""
    marks = dict(marks or {})
    label_width = min(240, 12 + 7 * max((len(k) for k in rows), default=4))
    value_width, top = 160, 6 + 14 * len(marks)
    (x0, x1) = x_range
    span = (x1 - x0) or 1.0
    plot = width - label_width - value_width

    def at(value):
        return label_width + plot * (min(max(value, x0), x1) - x0) / span
    parts = []
    bottom = top + len(rows) * row_height
    for k, (name, value) in enumerate(marks.items()):
        colour, x = _MARKS[k % len(_MARKS)], at(value)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 3}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}" '
                     f'stroke-dasharray="4 3"><title>{html.escape(name)}: {value:.4g}</title></line>'
                     f'<text x="{x:.1f}" y="{11 + 14 * k}" text-anchor="middle" fill="{colour}">'
                     f'{html.escape(name)} {value:.3g}</text>')
    kinds = []
    for i, (key, (value, interval, kind)) in enumerate(rows.items()):
        y = top + i * row_height + row_height / 2
        colour = INTERVAL_KINDS.get(kind, '#999')
        if kind not in kinds:
            kinds.append(kind)
        parts.append(f'<text x="{label_width - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(key)}</text>')
        if finite(value) is None:
            parts.append(f'<text x="{label_width + 4}" y="{y + 4:.1f}" fill="#999">n/a</text>')
            continue
        text = f'{value:.3f}'
        if interval is not None:
            low, high = at(interval[0]), at(interval[1])
            parts.append(f'<line x1="{low:.1f}" y1="{y:.1f}" x2="{high:.1f}" y2="{y:.1f}" stroke="{colour}" '
                         f'stroke-width="2"/>' + ''.join(
                             f'<line x1="{x:.1f}" y1="{y - 5:.1f}" x2="{x:.1f}" y2="{y + 5:.1f}" stroke="{colour}" '
                             'stroke-width="2"/>' for x in (low, high)))
            text += f' [{interval[0]:.3f}, {interval[1]:.3f}]'
        parts.append(f'<circle cx="{at(value):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"><title>{html.escape(key)}: '
                     f'{html.escape(text)}</title></circle>'
                     f'<text x="{label_width + plot + 8}" y="{y + 4:.1f}">{html.escape(text)}</text>')
    parts.append(f'<line x1="{label_width}" y1="{bottom}" x2="{label_width + plot}" y2="{bottom}" stroke="#bbb"/>')
    for x in (x0, (x0 + x1) / 2, x1):
        anchor = 'start' if x == x0 else 'end' if x == x1 else 'middle'
        parts.append(f'<text x="{at(x):.1f}" y="{bottom + 14}" text-anchor="{anchor}" fill="#555">{x:.3g}</text>')
    legend_x = label_width
    for kind in kinds:
        parts.append(f'<text x="{legend_x}" y="{bottom + 32}" fill="{INTERVAL_KINDS.get(kind, "#999")}">■ '
                     f'{html.escape(kind)}</text>')
        legend_x += 24 + 7 * len(kind)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bottom + 40}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(parts)}</svg>')


def signed_bar_chart(values: Mapping[str, Optional[float]], unit: str = '', width: int = 640,
                     bar_height: int = 18) -> str:
    """Horizontal bars either side of a zero line, scaled to the largest magnitude: changes, where a bar
    to the left (red) is a decrease and one to the right an increase; a missing or NaN value reads '-'."""
    label_width, value_width = 190, 70
    numbers = [n for n in map(finite, values.values()) if n is not None]
    largest = max((abs(n) for n in numbers), default=0) or 1.0
    half = (width - label_width - 2 * value_width) / 2
    zero = label_width + value_width + half
    parts = []
    for i, (name, raw) in enumerate(values.items()):
        y, value = i * (bar_height + 4), finite(raw)
        parts.append(f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end">{html.escape(name)}</text>')
        if value is None:
            parts.append(f'<text x="{zero + 4:.1f}" y="{y + bar_height - 5}">-</text>')
            continue
        length = max(1.0, half * abs(value) / largest)
        x = zero - length if value < 0 else zero
        text_x, anchor = (x - 4, 'end') if value < 0 else (zero + length + 4, 'start')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{bar_height}" '
                     f'fill="{_ALERT if value < 0 else _BAR}"><title>{html.escape(name)}: {value:+.4g}{unit}</title>'
                     f'</rect><text x="{text_x:.1f}" y="{y + bar_height - 5}" text-anchor="{anchor}">'
                     f'{value:+.3g}{unit}</text>')
    height = len(values) * (bar_height + 4)
    parts.append(f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{height}" stroke="#666"/>')
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="12" role="img">{"".join(parts)}</svg>')


# -- directed acyclic graphs ------------------------------------------------------------------------

# Fill, border, text colour, corner radius and border dash per node kind: artifacts are rounded,
# executions square; kinds not listed are drawn grey.
DAG_KINDS = {
    'execution': ('#4a7fb5', '#35608a', '#fff', 3, ''),
    'artifact': ('#eef4fb', '#4a7fb5', '#222', 12, ''),
    'earlier': ('#f4f4f4', '#888', '#444', 12, '4 3'),
    'release': ('#3a9a5b', '#2c7545', '#fff', 3, ''),
    'monitor': ('#e08a2c', '#b06a1c', '#fff', 3, ''),
    'failed': ('#c0392b', '#922b21', '#fff', 3, ''),
}
_OTHER_KIND = ('#ddd', '#999', '#222', 3, '')
# Approximate widths of a character at the two label sizes (system-ui): enough to size boxes without a font.
_CHAR_WIDTH, _SMALL_CHAR_WIDTH = 7.0, 6.0


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + '…'


def _label_lines(label: str, limit: int) -> Tuple[str, str]:
    first, _, second = label.partition('\n')
    return _truncate(first, limit), _truncate(second, limit + 2)


def _dash(pattern: str) -> str:
    return f' stroke-dasharray="{pattern}"' if pattern else ''


def _node_svg(node: Sequence, lines: Tuple[str, str], centre: Tuple[float, float], box: Tuple[float, float]) -> str:
    """A node's box and label (one or two lines), its full label and tooltip in a <title>."""
    label, kind = str(node[0]), node[1]
    tooltip = node[2] if len(node) > 2 and node[2] else ''
    fill, stroke, ink, rx, dash = DAG_KINDS.get(kind, _OTHER_KIND)
    (x, y), (width, height) = centre, box
    first, second = lines
    left, top = x - width / 2, y - height / 2
    title = label.replace('\n', ' — ') + (f'\n{tooltip}' if tooltip else '')
    text_y = top + (15 if second else 16)
    small = (f'<text x="{x:.1f}" y="{text_y + 13:.1f}" text-anchor="middle" fill="{ink}" '
             f'font-size="10" opacity="0.85">{html.escape(second)}</text>' if second else '')
    return (f'<g class="node {html.escape(kind)}"><title>{html.escape(title)}</title>'
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" height="{height}" rx="{rx}" fill="{fill}" '
            f'stroke="{stroke}"{_dash(dash)}/>'
            f'<text x="{x:.1f}" y="{text_y:.1f}" text-anchor="middle" fill="{ink}">'
            f'{html.escape(first)}</text>{small}</g>')


def _curve(points: Sequence[Tuple[float, float]], vertical: bool) -> str:
    """A path through the points: straight where they line up, else an S-curve that leaves and enters
    along the direction of the drawing."""
    (x, y), rest = points[0], points[1:]
    path = [f'M{x:.1f},{y:.1f}']
    for nx, ny in rest:
        if abs((nx - x) if vertical else (ny - y)) < 0.5:
            path.append(f'L{nx:.1f},{ny:.1f}')
        elif vertical:
            mid = (y + ny) / 2
            path.append(f'C{x:.1f},{mid:.1f} {nx:.1f},{mid:.1f} {nx:.1f},{ny:.1f}')
        else:
            mid = (x + nx) / 2
            path.append(f'C{mid:.1f},{y:.1f} {mid:.1f},{ny:.1f} {nx:.1f},{ny:.1f}')
        x, y = nx, ny
    return ' '.join(path)


def _legend(kinds: Mapping[str, str], y: float) -> Tuple[str, float]:
    """Swatches naming the kinds, in a row at `y`; returns the svg and the row's width."""
    parts, x = [], 0.0
    for kind, text in kinds.items():
        fill, stroke, _, rx, dash = DAG_KINDS.get(kind, _OTHER_KIND)
        parts.append(f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="18" height="12" rx="{min(rx, 5)}" fill="{fill}" '
                     f'stroke="{stroke}"{_dash(dash and "3 2")}/><text x="{x + 24:.0f}" y="{y:.0f}" '
                     f'fill="#444">{html.escape(text)}</text>')
        x += 40 + _CHAR_WIDTH * len(text)
    return ''.join(parts), x


def dag(nodes: Mapping[str, Sequence], edges: Sequence[Tuple[str, str]], legend: Optional[Mapping[str, str]] = None,
        max_chars: int = 22, id_prefix: str = 'dag', direction: str = 'LR', max_width: Optional[float] = None) -> str:
    """A directed acyclic graph, layered left to right: `nodes` maps id -> (label, kind[, tooltip]) in
    a preferred order; a label's second line (after '\\n') is drawn smaller; `kind` picks the shape
    and colour (DAG_KINDS: 'artifact' rounded, 'execution' square, 'earlier' dashed, 'release',
    'monitor', 'failed'; others grey); `edges` are (from, to) ids.

    Where the boxes and edges go is `graph_layout.layout`'s (layers, crossings kept low, long edges
    routed between the boxes). Labels longer than `max_chars` are cut (the full text
    and the tooltip show on hover). `legend` names the kinds under the drawing (kind -> text;
    default the kinds used). `direction` 'TB' layers top to bottom, and so does a left-to-right
    drawing wider than `max_width`: a deep graph stays readable in a page instead of shrinking.
    `id_prefix` keeps marker ids apart when a page holds several drawings."""
    ids = list(nodes)
    if not ids:
        return ''
    edges = list(dict.fromkeys((a, b) for a, b in edges if a in nodes and b in nodes and a != b))
    lines = {n: _label_lines(str(nodes[n][0]), max_chars) for n in ids}
    boxes = {n: (max(len(a) * _CHAR_WIDTH, len(b) * _SMALL_CHAR_WIDTH) + 18, 36 if b else 24)
             for n, (a, b) in lines.items()}
    layout = graph_layout.layout(ids, edges, boxes, direction)
    if max_width is not None and not layout.vertical and layout.width > max_width:
        layout = graph_layout.layout(ids, edges, boxes, 'TB')
    pad = 4
    marker = f'{id_prefix}-arrow'
    parts = [f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>']
    for (a, b), points in layout.edges.items():
        title = f'{nodes[a][0]} → {nodes[b][0]}'.replace('\n', ' ')
        parts.append(f'<path d="{_curve(points, layout.vertical)}" fill="none" stroke="#888" stroke-width="1.3" '
                     f'marker-end="url(#{marker})"><title>{html.escape(title)}</title></path>')
    parts.extend(_node_svg(nodes[n], lines[n], layout.centres[n], boxes[n]) for n in ids)
    shown = legend if legend is not None else {k: k for k in dict.fromkeys(nodes[n][1] for n in ids)}
    key, key_width = _legend(shown, layout.height + 22)
    width, height = max(layout.width, key_width) + 2 * pad, layout.height + 30 + 2 * pad
    return (f'<svg class="chart dag" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="{-pad} {-pad} {width:.0f} {height:.0f}" font-family="system-ui, sans-serif" font-size="12" '
            f'role="img"><g>{"".join(parts)}</g>{key}</svg>')
