"""svg_charts.dag: a lineage-sized graph drawn readably, as SVG a page can hold inline."""

import random
import re
import xml.etree.ElementTree as ElementTree

from pipeline import svg_charts

_SVG = '{http://www.w3.org/2000/svg}'


def _graph(count=30, seed=7):
    rng = random.Random(seed)
    kinds = ('execution', 'artifact', 'earlier', 'release', 'monitor', 'unheard-of')
    nodes = {f'n{i}': (f'{"Component" if i % 2 else "ArtifactWithAVeryLongTypeName"}{i}\nsecond line {i}',
                       kinds[i % len(kinds)], f'tooltip {i}') for i in range(count)}
    edges = [(f'n{a}', f'n{b}') for a in range(count) for b in range(a + 1, count) if rng.random() < 0.1]
    return nodes, edges


def _boxes(root):
    found = {}
    for group in root.iter(f'{_SVG}g'):
        if 'node' in group.get('class', '').split():
            rect = group.find(f'{_SVG}rect')
            found[group.find(f'{_SVG}title').text] = tuple(float(rect.get(k)) for k in ('x', 'y', 'width', 'height'))
    return found


def _overlap(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_thirty_nodes_are_drawn_once_each_without_overlap_and_every_edge_points_forward():
    nodes, edges = _graph()
    drawn = svg_charts.dag(nodes, edges + [('n3', 'n3'), ('n4', 'nowhere')])  # a loop and a stray: ignored
    root = ElementTree.fromstring(drawn)  # well-formed: it goes inline in a page
    assert '<script' not in drawn and 'http://' not in drawn.replace('http://www.w3.org/2000/svg', '')
    boxes = list(_boxes(root).values())
    assert len(boxes) == len(nodes)
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if _overlap(a, b)]
    paths = [p for p in root.iter(f'{_SVG}path') if p.get('marker-end')]
    assert len(paths) == len(edges)
    for path in paths:  # left to right: an arrow ends right of where it starts
        numbers = [float(n) for n in re.findall(r'-?\d+(?:\.\d+)?', path.get('d'))]
        assert numbers[-2] > numbers[0]


def test_long_labels_are_cut_and_shown_in_full_on_hover():
    drawn = svg_charts.dag({'a': ('ArtifactWithAVeryLongTypeName', 'artifact', 'gs://bucket/x'),
                            'b': ('Trainer', 'execution')}, [('a', 'b')], max_chars=12)
    assert '>ArtifactWit…</text>' in drawn
    assert '<title>ArtifactWithAVeryLongTypeName\ngs://bucket/x</title>' in drawn
    assert '>Trainer</text>' in drawn


def test_a_deep_graph_too_wide_for_the_page_is_drawn_top_to_bottom():
    nodes = {f'n{i}': (f'Step number {i}', 'execution') for i in range(16)}
    chain = [(f'n{i}', f'n{i + 1}') for i in range(15)]
    wide = ElementTree.fromstring(svg_charts.dag(nodes, chain))
    assert float(wide.get('width')) > 1200 > float(wide.get('height'))
    tall = ElementTree.fromstring(svg_charts.dag(nodes, chain, max_width=1200))
    assert float(tall.get('width')) < float(tall.get('height'))
    boxes = _boxes(tall)
    assert [boxes[f'Step number {i}'][1] for i in range(16)] == sorted(boxes[f'Step number {i}'][1] for i in range(16))


def test_a_long_edge_is_routed_around_the_boxes_it_passes():
    # a -> b -> c -> d, and a -> d straight past b and c: its path must not run through their boxes.
    nodes = {k: (f'Node {k}', 'execution') for k in 'abcd'}
    root = ElementTree.fromstring(svg_charts.dag(nodes, [('a', 'b'), ('b', 'c'), ('c', 'd'), ('a', 'd')]))
    boxes = _boxes(root)
    long = next(p for p in root.iter(f'{_SVG}path') if p.get('marker-end')
                and p.find(f'{_SVG}title').text == 'Node a → Node d')
    numbers = [float(n) for n in re.findall(r'-?\d+(?:\.\d+)?', long.get('d'))]
    for x, y in zip(numbers[::2], numbers[1::2]):
        for name in ('Node b', 'Node c'):
            bx, by, bw, bh = boxes[name]
            assert not (bx < x < bx + bw and by < y < by + bh), (x, y, name)
