"""The look every HTML report shares (run, monitoring, registry, lineage, model
card, runs and their comparison): one stylesheet, tables, distance charts, a
bar of links to the related reports, and the page around them. Pages open
from disk anywhere: no script, no network.

Reports that link to each other live in one directory (`<workspace>/reports`)
under the names `report_file` gives; a link is drawn only to a page that
exists there, so no page points at nothing.
"""

from __future__ import annotations

import html
import math
import os
import re
from typing import Iterable, Optional, Sequence, Tuple

from pipeline import svg_charts

STYLE = '''
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.bad { color: #b00; font-weight: bold; } .good { color: #070; font-weight: bold; }
.pair { display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }
nav { margin: -1em 0 1.5em; padding: 0.4em 0; border-bottom: 1px solid #ddd; font-size: 14px; }
nav a { margin-right: 1.2em; } nav .here { margin-right: 1.2em; font-weight: bold; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; font-size: 14px; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; }
table.pairs td, table.pairs th, .text td, .text th { text-align: left; } table.pairs th { font-weight: normal; }
.text td { max-width: 48em; } p, ul { max-width: 60em; } li { margin: 0.2em 0; }
.graph { overflow-x: auto; margin-bottom: 1em; } .note { color: #555; font-size: 14px; }
'''

# Report kinds and their file names in the reports directory.
RUN, MONITORING, REGISTRY, LINEAGE, MODEL_CARD, RUNS, COMPARISON = (
    'run', 'monitor', 'registry', 'lineage', 'model-card', 'runs', 'compare')


def report_file(kind: str, *keys) -> str:
    """The file name of a report: `run-<run id>.html`, `lineage-<version>.html`, `model-card-<version>.html`,
    `compare-<run>-<run>.html`, `registry.html`, `runs.html` (characters a file name should not hold dropped)."""
    name = '-'.join([kind, *(re.sub(r'[^A-Za-z0-9_.-]', '', str(k)) for k in keys)])
    return f'{name}.html'


def links(directory: Optional[str], wanted: Sequence[Tuple[str, str]], here: str = '') -> str:
    """A bar of links, (label, file name) each, to the pages that exist in `directory`; `here` names this page."""
    shown = []
    for label, name in wanted:
        if name == here:
            shown.append(f'<span class="here">{html.escape(label)}</span>')
        elif directory is not None and os.path.exists(os.path.join(directory, name)):
            shown.append(f'<a href="{html.escape(name)}">{html.escape(label)}</a>')
    return f'<nav>{"".join(shown)}</nav>' if len(shown) > 1 or (shown and not here) else ''


def newest_monitoring(directory: Optional[str]) -> Optional[str]:
    """The newest monitoring report's file name in `directory` (their names sort by window end)."""
    if directory is None or '://' in directory or not os.path.isdir(directory):
        return None
    found = sorted(n for n in os.listdir(directory) if n.startswith(MONITORING + '-') and n.endswith('.html'))
    return found[-1] if found else None


def related(directory: Optional[str], here: str, runs: Sequence[str] = (), versions: Sequence = ()) -> str:
    """The links every report shows, in one order: the runs, each run's report, each version's lineage
    and model card, the registry, the newest monitoring report (those that exist in `directory`)."""
    wanted = [('Runs', report_file(RUNS))]
    wanted += [(f'Run {run}', report_file(RUN, run)) for run in runs if run]
    for version in versions:
        wanted += [(f'Lineage of {version}', report_file(LINEAGE, version)),
                   (f'Model card of {version}', report_file(MODEL_CARD, version))]
    wanted.append(('Registry', report_file(REGISTRY)))
    monitoring = newest_monitoring(directory)
    if monitoring or here.startswith(MONITORING + '-'):
        wanted.append(('Monitoring', here if here.startswith(MONITORING + '-') else monitoring))
    return links(directory, wanted, here)


def facts(pairs: Iterable[Tuple[str, object]]) -> str:
    """A two-column list of named facts."""
    return '<dl class="facts">' + ''.join(f'<dt>{html.escape(str(k))}</dt><dd>{html.escape(cell(v))}</dd>'
                                          for k, v in pairs) + '</dl>'


def cell(value) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def finite(value) -> Optional[float]:
    """A number as a float; None for none: missing, NaN (a slice with one label) or infinite."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def metric_text(value) -> str:
    """A metric as tables and text show it: 4 decimals, '-' for none (missing or NaN)."""
    number = finite(value)
    return '-' if number is None else f'{number:.4f}'


def count_text(value) -> str:
    """A count (TFMA's are floats) as a whole number, '-' for none."""
    number = finite(value)
    return '-' if number is None else str(int(number))


def json_ready(value):
    """`value` with every NaN or infinite float, however deep, as None: JSON has no such numbers."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


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


def page(title: str, parts: Iterable[str], nav: str = '') -> str:
    """The page: `nav` (from `links`) first, then the parts."""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body>{nav}{"".join(parts)}</body></html>')
