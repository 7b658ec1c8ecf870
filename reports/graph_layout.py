"""Where a directed acyclic graph's boxes and edges go, apart from drawing them.

Layered as in Sugiyama's method: a node's layer is its longest path from a
source; an edge spanning layers becomes a chain of points, one per layer it
crosses, so it is routed between the boxes; nodes in a layer are ordered by
barycentre to limit crossings, then placed towards their neighbours; edges
into one box are spread over its side. `reports.charts.dag` draws the result.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence, Tuple

# Space between layers (room for arrows), between boxes in a layer, and beside an edge routed through one;
# by direction, as boxes are wider than tall.
_GAPS = {'LR': (40, 14, 8), 'TB': (34, 22, 10)}


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
class Layout:
    """Where a drawing's boxes and edges go: box centres, (width, height) per node, edge points."""
    centres: dict
    boxes: dict
    edges: dict
    width: float
    height: float
    vertical: bool


def layout(ids: Sequence[str], edges: Sequence[Tuple[str, str]], boxes: Mapping[str, Tuple[float, float]],
            direction: str) -> Layout:
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
    return Layout(centres, dict(boxes), points, breadth if vertical else length,
                   length if vertical else breadth, vertical)

