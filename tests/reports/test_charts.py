"""reports.charts: a lineage-sized graph drawn readably, as SVG a page can hold inline; bars side by side
and either side of zero; values on their intervals."""

import random
import re
import xml.etree.ElementTree as ElementTree

import pytest

from reports import charts

pytestmark = pytest.mark.unit


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
    drawn = charts.dag(nodes, edges + [('n3', 'n3'), ('n4', 'nowhere')])  # a loop and a stray: ignored
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
    drawn = charts.dag({'a': ('ArtifactWithAVeryLongTypeName', 'artifact', 'gs://bucket/x'),
                            'b': ('Trainer', 'execution')}, [('a', 'b')], max_chars=12)
    assert '>ArtifactWit…</text>' in drawn
    assert '<title>ArtifactWithAVeryLongTypeName\ngs://bucket/x</title>' in drawn
    assert '>Trainer</text>' in drawn


def test_a_deep_graph_too_wide_for_the_page_is_drawn_top_to_bottom():
    nodes = {f'n{i}': (f'Step number {i}', 'execution') for i in range(16)}
    chain = [(f'n{i}', f'n{i + 1}') for i in range(15)]
    wide = ElementTree.fromstring(charts.dag(nodes, chain))
    assert float(wide.get('width')) > 1200 > float(wide.get('height'))
    tall = ElementTree.fromstring(charts.dag(nodes, chain, max_width=1200))
    assert float(tall.get('width')) < float(tall.get('height'))
    boxes = _boxes(tall)
    assert [boxes[f'Step number {i}'][1] for i in range(16)] == sorted(boxes[f'Step number {i}'][1] for i in range(16))


def test_a_long_edge_is_routed_around_the_boxes_it_passes():
    # a -> b -> c -> d, and a -> d straight past b and c: its path must not run through their boxes.
    nodes = {k: (f'Node {k}', 'execution') for k in 'abcd'}
    root = ElementTree.fromstring(charts.dag(nodes, [('a', 'b'), ('b', 'c'), ('c', 'd'), ('a', 'd')]))
    boxes = _boxes(root)
    long = next(p for p in root.iter(f'{_SVG}path') if p.get('marker-end')
                and p.find(f'{_SVG}title').text == 'Node a → Node d')
    numbers = [float(n) for n in re.findall(r'-?\d+(?:\.\d+)?', long.get('d'))]
    for x, y in zip(numbers[::2], numbers[1::2]):
        for name in ('Node b', 'Node c'):
            bx, by, bw, bh = boxes[name]
            assert not (bx < x < bx + bw and by < y < by + bh), (x, y, name)


def _widths(svg: str):
    return [float(w) for w in re.findall(r'<rect x="[^"]+" y="[^"]+" width="([0-9.]+)"', svg)]


def test_paired_bars_show_both_values_of_a_key_and_skip_what_is_missing():
    svg = charts.paired_bar_chart({'overall': (0.9, 0.6), 'one label': (None, 0.45)}, names=('run 1', 'run 2'),
                                      x_max=1.0)
    first, second, alone = _widths(svg)
    assert second / first == pytest.approx(0.6 / 0.9, rel=0.01) and alone / first == pytest.approx(0.5, rel=0.01)
    assert '■ run 1' in svg and '■ run 2' in svg and 'one label, run 2: 0.45' in svg
    assert 'one label, run 1' not in svg


def test_signed_bars_put_decreases_left_of_zero_in_red():
    svg = charts.signed_bar_chart({'auc': -0.02, 'recall': 0.04, 'precision': float('nan')})
    zero = float(re.search(r'<line x1="([0-9.]+)"', svg).group(1))
    bars = re.findall(r'<rect x="([0-9.]+)" y="[^"]+" width="([0-9.]+)" height="[^"]+" fill="([^"]+)"', svg)
    (auc_x, auc_width, auc_fill), (recall_x, recall_width, recall_fill) = bars
    # Drawn to a tenth of a pixel.
    assert float(auc_x) + float(auc_width) == pytest.approx(zero, abs=0.2)
    assert float(recall_x) == pytest.approx(zero, abs=0.1)
    assert float(recall_width) == pytest.approx(2 * float(auc_width), abs=0.2) and auc_fill != recall_fill
    assert '+0.04' in svg and '-0.02' in svg


def test_an_interval_chart_draws_each_value_on_its_whisker_and_says_what_is_missing():
    drawn = charts.interval_chart({'estimated': (0.8, (0.75, 0.85), 'estimated'), 'realised': (0.7, None, 'realised'),
                                   'undefined': (None, None, 'realised'), '<b>': (0.2, None, 'reference')},
                                  (0.5, 1.0), marks={'minimum': 0.6})
    root = ElementTree.fromstring(drawn)
    dots = {c.find(f'{_SVG}title').text: float(c.get('cx')) for c in root.iter(f'{_SVG}circle')}
    assert set(dots) == {'estimated: 0.800 [0.750, 0.850]', 'realised: 0.700', '<b>: 0.200'}
    # On one scale: the realised value left of the estimate; a value off the scale sits at its end.
    assert dots['<b>: 0.200'] < dots['realised: 0.700'] < dots['estimated: 0.800 [0.750, 0.850]']
    assert '>n/a</text>' in drawn and '>minimum 0.6</text>' in drawn and '&lt;b&gt;' in drawn
    whisker = [line for line in root.iter(f'{_SVG}line') if line.get('stroke-width') == '2']
    assert len(whisker) == 3  # one interval: its line and two end caps
