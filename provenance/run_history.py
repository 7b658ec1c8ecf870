"""Every pipeline run, oldest first: `taxi-pipeline runs`.

One row per run, numbered from 1 as `run_record.find` (and so `runs compare
A B`) accepts them: when and why it ran, the data span, the parameters set
differently from the first run, how long it took, how it ended, the overall
evaluation metrics, whether it was blessed and pushed (a run whose Pusher was
cached pushed nothing: `cached (vV by #N)`, run N pushed V), and the code commit.
As text (an aligned table), JSON-ready dicts, or a page with charts (`reports`: templates/runs.html).

Everything is read off the runs' lineage graphs, the overall metrics too:
the Evaluator records them on its output artifact, so listing runs needs no
TFMA (whose imports alone take seconds). Only runs from before it did fall
back to reading the evaluation with TFMA.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from provenance import run_record
from release import ledger
from reports import page as reports_page
from reports.formatting import finite, json_ready, metric_text

# The columns of the text table (`_text_cells` fills them).
_TEXT_COLUMNS = ('#', 'WHEN (UTC)', 'RUN', 'TRIGGER', 'SPAN', 'DURATION', 'OUTCOME', 'AUC', 'ACCURACY', 'BLESSED',
                 'PUSHED', 'COMMIT', 'CHANGED PARAMETERS')
CHANGED_NOTE = 'changed parameters: those that differ from the first run that recorded them'
DIRTY_NOTE = '*: the commit had uncommitted changes'


def _overall(record: run_record.RunRecord) -> Tuple[Optional[float], Optional[float]]:
    """The candidate model's overall (AUC, accuracy), (None, None) if the run did not evaluate."""
    try:
        candidate = record.overall_metrics()
    except Exception as e:  # noqa: BLE001 - an evaluation removed or unreadable (TensorFlow's own errors too):
        # the run is listed without metrics, and says why
        candidate = {}
        print(f'run {record.name}: evaluation not readable ({type(e).__name__}); listed without metrics',
              file=sys.stderr)
    return finite(candidate.get('auc')), finite(candidate.get('binary_accuracy'))


def commit_label(code) -> Optional[str]:
    """A commit as the listing shows it: 12 characters, `*` when the tree had uncommitted changes."""
    if code is None or not code.commit:
        return None
    return code.commit[:12] + ('*' if code.dirty else '')


def rows(records: Sequence[run_record.RunRecord]) -> List[Dict]:
    """One JSON-ready dict per run, in the order given (`run_record.all_runs`: oldest first), numbered from 1."""
    first_values: Dict[str, object] = {}
    numbers: Dict[str, int] = {}
    found = []
    for number, record in enumerate(records, start=1):
        parameters = record.parameters()
        # Against the first run that recorded each: a run that failed early does not make all later ones "changed".
        changed = {k: v for k, v in parameters.items() if k in first_values and first_values[k] != v}
        for key, value in parameters.items():
            first_values.setdefault(key, value)
        auc, accuracy = _overall(record)
        trigger, code = record.trigger, record.code
        numbers[record.name] = number
        # A cached Pusher pushed nothing: the version its output names, and the run that pushed it.
        cached = record.push_cached
        push_cached = {'version': cached[0], 'run': cached[1], 'number': numbers.get(cached[1])} if cached else None
        found.append({
            'number': number, 'run': record.name, 'started': ledger.format_time(record.started_ms * 1000),
            'started_ms': record.started_ms, 'trigger': trigger.kind if trigger else None,
            'trigger_detail': trigger.detail if trigger else None, 'span': record.span,
            'parameters': parameters, 'changed_parameters': changed, 'seconds': record.seconds,
            'outcome': record.outcome, 'auc': auc, 'accuracy': accuracy, 'blessed': record.blessed,
            'pushed_version': record.pushed_version, 'push_cached': push_cached, 'commit': commit_label(code),
            'code': dataclasses.asdict(code) if code else None})
    return json_ready(found)


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return '-'
    if seconds < 60:
        return f'{seconds:.0f}s'
    minutes, rest = divmod(int(round(seconds)), 60)
    return f'{minutes}m{rest:02d}s' if minutes < 60 else f'{minutes // 60}h{minutes % 60:02d}m'


def show(value) -> str:
    """A value in a table: '-' for none (or NaN), yes/no for booleans, floats below 10 (metrics) to 4 decimals."""
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float) and abs(value) >= 10:
        return f'{value:g}'
    return metric_text(value) if value is None or isinstance(value, float) else str(value)


def pushed_text(row: Dict) -> str:
    """The version a run pushed; for a run whose Pusher was cached, `cached (v<V> by #<N>)`: it pushed
    nothing, run N did."""
    cached = row.get('push_cached')
    if row['pushed_version'] is not None or not cached:
        return show(row['pushed_version'])
    if cached.get('number'):
        return f'cached (v{cached["version"]} by #{cached["number"]})'
    return f'cached (v{cached["version"]}' + (f' by {cached["run"]})' if cached.get('run') else ')')


def changed_text(changed: Dict[str, object]) -> str:
    # As set (0.5, not 0.5000): these are settings, not measurements.
    return ', '.join(f'{k}={v}' for k, v in changed.items()) or '-'


def _text_cells(row: Dict) -> List[str]:
    return [str(row['number']), row['started'], row['run'], show(row['trigger']), show(row['span']),
            duration(row['seconds']), row['outcome'], show(row['auc']), show(row['accuracy']), show(row['blessed']),
            pushed_text(row), show(row['commit']), changed_text(row['changed_parameters'])]


def render_text(rows: Sequence[Dict]) -> str:
    """The runs as an aligned table (the last column, the changed parameters, left ragged), then what marks mean."""
    if not rows:
        return 'no runs recorded in ML Metadata yet: run the pipeline first'
    table = [list(_TEXT_COLUMNS)] + [_text_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_TEXT_COLUMNS) - 1)]
    lines = ['  '.join([c.ljust(w) for c, w in zip(line, widths)] + [line[-1]]).rstrip() for line in table]
    dirty = any((r['commit'] or '').endswith('*') for r in rows)
    notes = [CHANGED_NOTE + ' (every parameter: --json)'] + ([DIRTY_NOTE] if dirty else [])
    return '\n'.join(lines + [''] + notes)


# The page.
def _exists(reports_dir: Optional[str], name: str) -> bool:
    return reports_dir is not None and os.path.exists(os.path.join(reports_dir, name))


def _when_cell(row: Dict, reports_dir: Optional[str]) -> Dict:
    """When the run started, linked to its run report if that page exists; the run's name on hover
    (the table has no room for it: `runs` and `runs --json` print it)."""
    name = reports_page.report_file(reports_page.RUN, row['run'])
    return {'kind': 'when', 'text': row['started'], 'title': f'run {row["run"]}',
            'href': name if _exists(reports_dir, name) else None}


def _comparison_cell(row: Dict, previous: Optional[Dict], reports_dir: Optional[str]):
    """A link to the comparison with the run before, if that page exists."""
    name = (reports_page.report_file(reports_page.COMPARISON, previous['run'], row['run'])
            if previous is not None else None)
    if name is None or not _exists(reports_dir, name):
        return '-'
    return {'kind': 'compared', 'href': name, 'text': f'vs #{previous["number"]}'}


def _metrics_chart(rows: Sequence[Dict]) -> Optional[Dict]:
    series = {name: [(r['number'], r[key]) for r in rows if r[key] is not None]
              for name, key in (('AUC', 'auc'), ('accuracy', 'accuracy'))}
    values = [y for points in series.values() for _, y in points]
    if not values:
        return None
    # Scaled to the values: runs differ in the second decimal, which a 0-1 axis would flatten.
    low, high = max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.02)
    step = max(1, len(rows) // 15)  # at most ~15 tick labels
    return {'series': {k: v for k, v in series.items() if v}, 'x_range': (0.5, len(rows) + 0.5),
            'y_range': (low, high), 'width': max(420, min(900, 60 * len(rows))),
            'x_labels': {float(r['number']): f'#{r["number"]}' for r in rows[::step]}}


def _outcomes(rows: Sequence[Dict]) -> str:
    outcomes: Dict[str, int] = {}
    for row in rows:
        outcomes[row['outcome']] = outcomes.get(row['outcome'], 0) + 1
    return ', '.join(f'{n} {outcome}' for outcome, n in sorted(outcomes.items()))


def page(rows: Sequence[Dict], reports_dir: Optional[str]) -> str:
    """The runs page: evaluation and duration per run as charts, then the table, each row linking to its
    run report and to its comparison with the run before when those pages exist in `reports_dir`."""
    nav = reports_page.related(reports_dir, reports_page.report_file(reports_page.RUNS))
    if not rows:
        return reports_page.render('runs.html', title='Pipeline runs', nav=nav, rows=[])
    headers = ['#', 'when (UTC)', 'trigger', 'span', 'duration', 'outcome', 'AUC', 'accuracy', 'blessed', 'pushed',
               'commit', 'compared', 'changed parameters']
    return reports_page.render(
        'runs.html', title='Pipeline runs', nav=nav, first_started=rows[0]['started'],
        last_started=rows[-1]['started'], outcomes=_outcomes(rows), metrics=_metrics_chart(rows),
        durations={f'#{r["number"]} {r["outcome"]}': r['seconds'] or 0.0 for r in rows}, headers=headers,
        # One line a run: only the changed parameters, free text, wrap.
        styles=['text-align: left' if h == 'changed parameters' else 'white-space: nowrap' for h in headers],
        rows=[[r['number'], _when_cell(r, reports_dir), show(r['trigger']), show(r['span']), duration(r['seconds']),
               r['outcome'], show(r['auc']), show(r['accuracy']), show(r['blessed']), pushed_text(r),
               show(r['commit']), _comparison_cell(r, rows[i - 1] if i else None, reports_dir),
               changed_text(r['changed_parameters'])] for i, r in enumerate(rows)],
        changed_note=CHANGED_NOTE, dirty_note=DIRTY_NOTE)
