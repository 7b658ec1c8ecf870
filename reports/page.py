"""Rendering a page: the templates, the reports' file names and the links between them.

Every page extends `templates/base.html` (one stylesheet, the bar of links,
no script, no network). Templates escape every value they are given; charts
(`reports.charts`) are called from the templates and are SVG already.

Reports that link to each other live in one directory (`<workspace>/reports`)
under the names `report_file` gives; a link is drawn only to a page that
exists there, so no page points at nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import List, Optional, Sequence, Tuple

import jinja2
from markupsafe import Markup

from reports import charts, formatting

# Report kinds and their file names in the reports directory.
RUN, MONITORING, REGISTRY, LINEAGE, MODEL_CARD, RUNS, COMPARISON = (
    'run', 'monitor', 'registry', 'lineage', 'model-card', 'runs', 'compare')


def report_file(kind: str, *keys) -> str:
    """The file name of a report: `run-<run id>.html`, `lineage-<version>.html`, `model-card-<version>.html`,
    `compare-<run>-<run>.html`, `registry.html`, `runs.html` (characters a file name should not hold dropped)."""
    name = '-'.join([kind, *(re.sub(r'[^A-Za-z0-9_.-]', '', str(k)) for k in keys)])
    return f'{name}.html'


@dataclasses.dataclass(frozen=True)
class Link:
    """One entry of a bar of links: `href` None for the page it is on."""

    label: str
    href: Optional[str]


def links(directory: Optional[str], wanted: Sequence[Tuple[str, str]], here: str = '') -> List[Link]:
    """Links, (label, file name) each, to the pages that exist in `directory`; `here` names this page,
    shown unlinked. None at all when this page would be the only entry."""
    shown = []
    for label, name in wanted:
        if name == here:
            shown.append(Link(label, None))
        elif directory is not None and os.path.exists(os.path.join(directory, name)):
            shown.append(Link(label, name))
    return shown if len(shown) > 1 or (shown and not here) else []


def newest_monitoring(directory: Optional[str]) -> Optional[str]:
    """The newest monitoring report's file name in `directory` (their names sort by window end)."""
    if directory is None or '://' in directory or not os.path.isdir(directory):
        return None
    found = sorted(n for n in os.listdir(directory) if n.startswith(MONITORING + '-') and n.endswith('.html'))
    return found[-1] if found else None


def related(directory: Optional[str], here: str, runs: Sequence[str] = (), versions: Sequence = ()) -> List[Link]:
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


def _drawing(draw):
    """A chart for templates: its SVG as markup, not text to escape."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        return Markup(draw(*args, **kwargs))
    return drawn


def _percent(value, digits: int = 1) -> str:
    """A share as a percentage, '-' for none."""
    return '-' if value is None else f'{value:.{digits}%}'


def threshold_ratios(findings) -> dict:
    """Each drift or skew finding's distance as a multiple of its threshold (where it has one number)."""
    return {f.feature: f.value / float(f.threshold) for f in findings
            if '-' not in f.threshold and float(f.threshold) > 0}


def distance_rows(findings, beyond: str) -> list:
    """The table behind `threshold_ratios`; `beyond` is the verdict past a threshold."""
    return [[f.feature, f.measure, f.value, f.threshold, beyond if f.drifted else 'ok'] for f in findings]


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(cell=formatting.cell, value=formatting.value_text, metric=formatting.metric_text,
                       count=formatting.count_text, percent=_percent)
    env.globals.update(threshold_ratios=threshold_ratios, distance_rows=distance_rows, zip=zip)
    env.globals.update({name: _drawing(getattr(charts, name)) for name in (
        'bar_chart', 'grouped_bar_chart', 'paired_bar_chart', 'signed_bar_chart', 'line_chart', 'timeline', 'dag',
        'interval_chart')})
    return env


def render(template: str, **context) -> str:
    """The page `template` (a file in reports/templates) makes of `context`."""
    return environment().get_template(template).render(**context)
