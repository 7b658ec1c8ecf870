"""Charts as inline SVG: reports open from disk, with no script or network."""

from __future__ import annotations

import dataclasses
import html
from typing import Mapping, Optional, Sequence, Tuple

# An import cycle (html_page draws with these charts), harmless: each uses the other only inside functions.
from pipeline import html_page

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
    present = [v for g in groups.values() for v in g.values() if html_page.finite(v) is not None]
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
            if html_page.finite(value) is None:
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


def signed_bar_chart(values: Mapping[str, Optional[float]], unit: str = '', width: int = 640,
                     bar_height: int = 18) -> str:
    """Horizontal bars either side of a zero line, scaled to the largest magnitude: changes, where a bar
    to the left (red) is a decrease and one to the right an increase; a missing or NaN value reads '-'."""
    label_width, value_width = 190, 70
    numbers = [n for n in map(html_page.finite, values.values()) if n is not None]
    largest = max((abs(n) for n in numbers), default=0) or 1.0
    half = (width - label_width - 2 * value_width) / 2
    zero = label_width + value_width + half
    parts = []
    for i, (name, raw) in enumerate(values.items()):
        y, value = i * (bar_height + 4), html_page.finite(raw)
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
# Space between layers (room for arrows), between boxes in a layer, and beside an edge routed through one;
# by direction, as boxes are wider than tall.
_GAPS = {'LR': (40, 14, 8), 'TB': (34, 22, 10)}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + '…'


def _layers(ids: Sequence[str], edges: Sequence[Tuple[str, str]]) -> dict[str, int]:
    """Each node's layer: the longest path to it from a source. Nodes are visited in topological
    order; an edge closing a cycle (not expected in lineage) is ignored for layering."""
    successors: dict[str, list] = {i: [] for i in ids}
    indegree = {i: 0 for i in ids}
    for a, b in edges:
        successors[a].append(b)
        indegree[b] += 1
    layer = {i: 0 for i in ids}
    ready = [i for i in ids if indegree[i] == 0]
    seen = set()
    while len(seen) < len(ids):
        if not ready:  # a cycle: carry on from the first node not placed yet
            ready = [next(i for i in ids if i not in seen)]
        node = ready.pop(0)
        if node in seen:
            continue
        seen.add(node)
        for nxt in successors[node]:
            if nxt not in seen:
                layer[nxt] = max(layer[nxt], layer[node] + 1)
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
    return layer


def _split_long_edges(layer: dict[str, int], edges: Sequence[Tuple[str, str]]):
    """Edges spanning several layers become chains through dummy points, one per layer crossed, so
    they are routed between the nodes instead of through them. Returns (chains per edge, short edges)."""
    chains, short = {}, []
    for a, b in edges:
        chain = [a]
        for step in range(layer[a] + 1, layer[b]):
            dummy = f'\0{a}\0{b}\0{step}'
            layer[dummy] = step
            chain.append(dummy)
        chain.append(b)
        chains[(a, b)] = chain
        short.extend(zip(chain, chain[1:]))
    return chains, short


def _crossings(rows: list[list[str]], short: Sequence[Tuple[str, str]], layer: dict[str, int]) -> int:
    """Edge crossings between adjacent layers: what the ordering keeps low."""
    position = {n: i for row in rows for i, n in enumerate(row)}
    between: dict[int, list[Tuple[int, int]]] = {}
    for a, b in short:
        between.setdefault(layer[a], []).append((position[a], position[b]))
    return sum(1 for pairs in between.values() for i, (a1, b1) in enumerate(pairs) for a2, b2 in pairs[i + 1:]
               if (a1 - a2) * (b1 - b2) < 0)


def _order(rows: list[list[str]], short: Sequence[Tuple[str, str]], layer: dict[str, int],
           sweeps: int = 8) -> list[list[str]]:
    """Barycentre ordering: each node moves to the mean position of its neighbours in the layer just
    swept, alternately left to right and back; the ordering with the fewest crossings is kept."""
    before: dict[str, list] = {}
    after: dict[str, list] = {}
    for a, b in short:
        after.setdefault(a, []).append(b)
        before.setdefault(b, []).append(a)
    best, best_count = [list(r) for r in rows], _crossings(rows, short, layer)
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        indices = range(1, len(rows)) if forward else range(len(rows) - 2, -1, -1)
        for i in indices:
            fixed = {n: p for p, n in enumerate(rows[i - 1 if forward else i + 1])}
            neighbours = before if forward else after

            def key(item):
                p, node = item
                found = [fixed[n] for n in neighbours.get(node, ()) if n in fixed]
                return (sum(found) / len(found) if found else p, p)
            rows[i] = [n for _, n in sorted(enumerate(rows[i]), key=key)]
        count = _crossings(rows, short, layer)
        if count < best_count:
            best, best_count = [list(r) for r in rows], count
    return best


def _gap(sizes: Mapping[str, float], a: str, b: str, node_gap: float, dummy_gap: float) -> float:
    """Least distance between the centres of two neighbours in a layer (a routed edge has no size)."""
    return (sizes[a] + sizes[b]) / 2 + (dummy_gap if not sizes[a] or not sizes[b] else node_gap)


def _straighten(rows: list[list[str]], chains: Mapping, at: dict[str, float], sizes: Mapping[str, float],
                node_gap: float, dummy_gap: float) -> None:
    """Each routed edge's points moved to one line (their median), as far as their neighbours in each
    layer leave room: a long edge reads as one line, not a wiggle."""
    slot = {n: (i, j) for i, row in enumerate(rows) for j, n in enumerate(row)}
    for chain in chains.values():
        dummies = chain[1:-1]
        if not dummies:
            continue
        line = sorted(at[d] for d in dummies)[len(dummies) // 2]
        for d in dummies:
            i, j = slot[d]
            row, low, high = rows[i], float('-inf'), float('inf')
            if j:
                low = at[row[j - 1]] + _gap(sizes, row[j - 1], d, node_gap, dummy_gap)
            if j + 1 < len(row):
                high = at[row[j + 1]] - _gap(sizes, d, row[j + 1], node_gap, dummy_gap)
            if low <= high:
                at[d] = min(max(line, low), high)


def _place(rows: list[list[str]], short: Sequence[Tuple[str, str]], chains: Mapping, sizes: Mapping[str, float],
           node_gap: float, dummy_gap: float, rounds: int = 8) -> dict[str, float]:
    """Centres across the layers: each layer stacked in order, then moved towards its nodes'
    neighbours in the layer before (sweeping forward), in the layer after (sweeping back), and both
    (last), keeping order and spacing: chains and routed edges run straight where they can."""
    def gap(a, b):
        return _gap(sizes, a, b, node_gap, dummy_gap)
    at: dict[str, float] = {}
    for row in rows:
        for i, n in enumerate(row):
            at[n] = at[row[i - 1]] + gap(row[i - 1], n) if i else sizes[n] / 2
    before: dict[str, list] = {}
    after: dict[str, list] = {}
    for a, b in short:
        after.setdefault(a, []).append(b)
        before.setdefault(b, []).append(a)
    sweeps = [(range(1, len(rows)), (before,)), (range(len(rows) - 2, -1, -1), (after,))] * rounds
    sweeps.append((range(len(rows)), (before, after)))
    for order, sides in sweeps:
        for i in order:
            row = rows[i]
            wanted = []
            for n in row:
                found = [at[m] for side in sides for m in side.get(n, ())]
                wanted.append(sum(found) / len(found) if found else at[n])
            placed = []
            for j, n in enumerate(row):
                placed.append(max(wanted[j], placed[-1] + gap(row[j - 1], n)) if j else wanted[j])
            # Spacing pushes one way only: shift the layer back by the mean push, or it would drift.
            shift = sum(p - w for p, w in zip(placed, wanted)) / len(row)
            for n, p in zip(row, placed):
                at[n] = p - shift
    _straighten(rows, chains, at, sizes, node_gap, dummy_gap)
    start = min((at[n] - sizes[n] / 2 for row in rows for n in row), default=0)
    return {n: v - start for n, v in at.items()}


def _label_lines(label: str, limit: int) -> Tuple[str, str]:
    first, _, second = label.partition('\n')
    return _truncate(first, limit), _truncate(second, limit + 2)


def _ports(chains: Mapping[Tuple[str, str], Sequence[str]], across: Mapping[str, float],
           sizes: Mapping[str, float], step: float) -> Tuple[dict, dict]:
    """Where each edge leaves its source and enters its target, as offsets across the node from its
    middle: edges sharing a side are spread over it in the order of where they come from or go, so
    arrows into one node stay apart and do not cross there."""
    sides: dict[Tuple[str, int], list] = {}
    for edge, chain in chains.items():
        sides.setdefault((chain[0], 1), []).append((across[chain[1]], edge))
        sides.setdefault((chain[-1], 0), []).append((across[chain[-2]], edge))
    leave, enter = {}, {}
    for (node, outgoing), found in sides.items():
        found.sort()
        spread = min(step, (sizes[node] - 10) / (len(found) - 1)) if len(found) > 1 else 0.0
        for i, (_, edge) in enumerate(found):
            (leave if outgoing else enter)[edge] = (i - (len(found) - 1) / 2) * spread
    return leave, enter


@dataclasses.dataclass
class _Layout:
    """Where a drawing's boxes and edges go: box centres, (width, height) per node, edge points."""
    centres: dict
    boxes: dict
    edges: dict
    width: float
    height: float
    vertical: bool


def _layout(ids: Sequence[str], edges: Sequence[Tuple[str, str]], boxes: Mapping[str, Tuple[float, float]],
            direction: str) -> _Layout:
    """Layers along the direction (x for 'LR', y for 'TB'), order across it; computed along/across
    and turned into x/y at the end."""
    vertical = direction == 'TB'
    layer_gap, node_gap, dummy_gap = _GAPS[direction]
    layer = _layers(ids, edges)
    chains, short = _split_long_edges(layer, edges)
    rows: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for n in list(ids) + [d for chain in chains.values() for d in chain[1:-1]]:
        rows[layer[n]].append(n)
    rows = _order(rows, short, layer)
    along_size = {n: boxes[n][1 if vertical else 0] if n in boxes else 0 for n in layer}
    across_size = {n: boxes[n][0 if vertical else 1] if n in boxes else 0 for n in layer}
    thickness = [max((along_size[n] for n in row), default=0) or 20 for row in rows]
    layer_at = [sum(thickness[:i]) + layer_gap * i for i in range(len(rows))]
    across = _place(rows, short, chains, across_size, node_gap, dummy_gap)
    along = {n: layer_at[layer[n]] + thickness[layer[n]] / 2 for n in layer}
    leave, enter = _ports(chains, across, across_size, 12.0 if vertical else 7.0)
    points = {}
    for (a, b), chain in chains.items():
        found = [(along[a] + along_size[a] / 2, across[a] + leave[(a, b)])]
        for d in chain[1:-1]:
            found += [(layer_at[layer[d]], across[d]), (layer_at[layer[d]] + thickness[layer[d]], across[d])]
        found.append((along[b] - along_size[b] / 2 - 1, across[b] + enter[(a, b)]))
        points[(a, b)] = [(q, p) if vertical else (p, q) for p, q in found]
    length = layer_at[-1] + thickness[-1]
    breadth = max((across[n] + across_size[n] / 2 for n in across), default=0)
    centres = {n: (across[n], along[n]) if vertical else (along[n], across[n]) for n in ids}
    return _Layout(centres, dict(boxes), points, breadth if vertical else length,
                   length if vertical else breadth, vertical)


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

    A node's layer is its longest path from a source; nodes in a layer are ordered by barycentre to
    limit crossings; an edge spanning layers is routed between the nodes of those it crosses; edges
    into one box are spread over its side. Labels longer than `max_chars` are cut (the full text
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
    layout = _layout(ids, edges, boxes, direction)
    if max_width is not None and not layout.vertical and layout.width > max_width:
        layout = _layout(ids, edges, boxes, 'TB')
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
