"""The look every HTML report shares (the run report, the monitoring report):
one stylesheet, tables, distance charts, and the page around them. Pages
open from disk anywhere: no script, no network."""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from pipeline import svg_charts

STYLE = '''
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.bad { color: #b00; font-weight: bold; } .good { color: #070; font-weight: bold; }
.pair { display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }
'''


def cell(value) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(cell(c))}</td>' for c in row) + '</tr>' for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def distances(findings, beyond: str) -> str:
    """A chart of each finding's distance over its threshold (red above 1) and the table
    behind it; `findings` are drift_check.FeatureDrift, `beyond` the verdict word past a threshold."""
    ratios = {f.feature: f.value / float(f.threshold) for f in findings
              if '-' not in f.threshold and float(f.threshold) > 0}
    rows = [[f.feature, f.measure, f.value, f.threshold, beyond if f.drifted else 'ok'] for f in findings]
    return (f'<p>Distance as a multiple of its threshold (above 1 is {beyond.lower()}):</p>'
            + svg_charts.bar_chart(ratios, unit='x', alert_above=1.0)
            + table(['feature', 'measure', 'value', 'allowed', 'verdict'], rows))


def page(title: str, parts: Iterable[str]) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body>{"".join(parts)}</body></html>')
