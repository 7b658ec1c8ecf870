"""What differed between two runs: `taxi-pipeline runs compare A B`.

Parameters and code as the runs recorded them, the data (span, rows per
split, the files' fingerprint, and the training split's feature statistics
where they moved beyond a tolerance), the candidate model's metrics per
slice with B - A, and what came of each (blessed, pushed). Differences come
first; a comparison where nothing differed says so.

Reads each run's TFDV statistics and TFMA metrics, so it pays for importing
TFDV and TFMA (docs/performance.md#comparing-runs).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from provenance import run_history, run_record
from release import ledger
from reports import page as reports_page
from reports.formatting import count_text, finite, json_ready

# The candidate metrics compared per slice; example_count says how much a slice's numbers weigh.
METRICS = ('auc', 'binary_accuracy', 'precision', 'recall', 'example_count')
# A feature's statistic "changed" when it moved by more than this share of its scale (see `_moved`).
TOLERANCE = 0.1
# Missing shares below this count as this much: two missing values more are not a change in the data.
MISSING_FLOOR = 0.05
TOLERANCE_NOTE = (f'moved: a mean by more than {TOLERANCE:.0%} of the standard deviation; a standard deviation, '
                  f'number of unique values or share of missing values by more than {TOLERANCE:.0%} of itself '
                  f'(missing shares under {MISSING_FLOOR:.0%} count as {MISSING_FLOOR:.0%}); or another most '
                  'frequent value. Features that did not move are not listed')
# How many slices the text names, by the size of their AUC change (the page shows all), and the examples a
# slice needs in both runs to be named: the AUC of a handful of examples swings by chance.
TEXT_SLICES, TEXT_SLICE_EXAMPLES = 5, 30


@dataclasses.dataclass(frozen=True)
class Difference:
    """One thing recorded for both runs with different values."""

    name: str
    a: object
    b: object


@dataclasses.dataclass(frozen=True)
class FeatureChange:
    """One statistic of one training-split feature that moved beyond the tolerance."""

    feature: str
    measure: str  # mean, std, missing share, unique, top value, type, or feature (present in one run only)
    a: object
    b: object


@dataclasses.dataclass(frozen=True)
class SliceMetrics:
    """The candidate model's metrics on one slice in each run ({} where the run has no such slice)."""

    slice: str
    a: Dict[str, Optional[float]]
    b: Dict[str, Optional[float]]

    def delta(self, metric: str) -> Optional[float]:
        a, b = self.a.get(metric), self.b.get(metric)
        return b - a if a is not None and b is not None else None

    @property
    def differs(self) -> bool:
        return self.a != self.b


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What each run was and what came of it, shown side by side (differences or not)."""

    name: str
    started: str
    trigger: Optional[str]
    outcome: str
    seconds: float
    span: Optional[int]
    rows: Dict[str, int]
    input_fingerprint: Optional[str]
    code: Optional[Dict]
    commit: Optional[str]
    parameters: Dict[str, object]
    blessed: Optional[bool]
    pushed_version: Optional[int]


@dataclasses.dataclass
class Comparison:
    a: RunFacts
    b: RunFacts
    parameters: List[Difference]
    code: List[Difference]
    data: List[Difference]
    features: List[FeatureChange]
    # None: not compared, and why (a run without training statistics).
    statistics_missing: Optional[str]
    slices: List[SliceMetrics]

    @property
    def metrics_differ(self) -> bool:
        return any(s.differs for s in self.slices)

    def differed(self) -> List[str]:
        """What differed, by area, most telling first; [] when nothing did."""
        found = []
        if self.parameters:
            found.append(f'parameters ({len(self.parameters)})')
        if self.code:
            found.append('code')
        if self.data:
            found.append('data')
        if self.features:
            found.append(f'training statistics ({len({f.feature for f in self.features})} features)')
        if self.metrics_differ:
            found.append('metrics')
        return found

    @property
    def overall(self) -> Optional[SliceMetrics]:
        from components.artifact_contents import OVERALL
        return next((s for s in self.slices if s.slice == OVERALL), None)

    def to_dict(self) -> Dict:
        """JSON-ready (NaN as None): what `runs compare --json` prints."""
        return json_ready({
            'a': dataclasses.asdict(self.a), 'b': dataclasses.asdict(self.b),
            'differed': self.differed(),
            'parameters': [dataclasses.asdict(d) for d in self.parameters],
            'code': [dataclasses.asdict(d) for d in self.code],
            'data': [dataclasses.asdict(d) for d in self.data],
            'features': [dataclasses.asdict(f) for f in self.features],
            'features_note': TOLERANCE_NOTE, 'statistics_missing': self.statistics_missing,
            'metrics': [{'slice': s.slice, 'a': s.a, 'b': s.b, 'delta': {m: s.delta(m) for m in METRICS}}
                        for s in self.slices],
        })

    def render_text(self) -> str:
        return _render_text(self)


# Building a comparison.
def _facts(record: run_record.RunRecord) -> RunFacts:
    trigger, code = record.trigger, record.code
    return RunFacts(
        name=record.name, started=ledger.format_time(record.started_ms * 1000),
        trigger=trigger.kind if trigger else None, outcome=record.outcome, seconds=record.seconds,
        span=record.span, rows=record.rows(), input_fingerprint=record.input_fingerprint,
        code=dataclasses.asdict(code) if code else None, commit=run_history.commit_label(code),
        parameters=record.parameters(), blessed=record.blessed, pushed_version=record.pushed_version)


def _differences(a: Dict[str, object], b: Dict[str, object]) -> List[Difference]:
    """Keys whose values differ (a key only one side has included, the other side None), in a's order."""
    keys = list(a) + [k for k in b if k not in a]
    return [Difference(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def _data_differences(a: RunFacts, b: RunFacts) -> List[Difference]:
    found = _differences({'span': a.span, **{f'{k} rows': v for k, v in a.rows.items()}},
                         {'span': b.span, **{f'{k} rows': v for k, v in b.rows.items()}})
    # Another span has other files by definition; the same span with another fingerprint means its files changed.
    if a.span == b.span and a.input_fingerprint != b.input_fingerprint:
        found.append(Difference('input files (same span, changed since)', a.input_fingerprint, b.input_fingerprint))
    return found


def feature_measures(stats) -> Dict[str, Dict[str, object]]:
    """Per feature, the statistics compared, from artifact_contents.statistics_rows (the top value from the proto:
    the rows join the top values into one string)."""
    from components.artifact_contents import STATISTICS_COLUMNS, statistics_rows
    top = {f.path.step[0]: f.string_stats.top_values[0].value for f in stats.datasets[0].features
           if f.HasField('string_stats') and f.string_stats.top_values}
    found = {}
    for row in statistics_rows(stats):
        row = dict(zip(STATISTICS_COLUMNS, row))
        counted = row['present'] + row['missing']
        measures = {'type': row['type'], 'missing share': row['missing'] / counted if counted else 0.0}
        if row['type'] == 'STRING':
            measures.update({'unique': row['unique'], 'top value': top.get(row['feature'])})
        else:
            measures.update({'mean': row['mean'], 'std': row['std']})
        found[row['feature']] = measures
    return found


def _moved(measure: str, a, b, spread: float) -> bool:
    """Whether a statistic moved beyond the tolerance; `spread` is the larger of the two standard deviations."""
    if measure in ('type', 'top value') or a is None or b is None:
        return a != b
    if measure == 'mean':
        # Relative to the spread, not the mean: a latitude's mean never moves 10% of itself.
        scale = spread
    elif measure == 'missing share':
        scale = max(a, b, MISSING_FLOOR)
    else:
        scale = max(abs(a), abs(b))
    return abs(b - a) > TOLERANCE * scale if scale else a != b


def feature_changes(stats_a, stats_b) -> List[FeatureChange]:
    """The training-split statistics that moved beyond the tolerance, by feature name."""
    a, b = feature_measures(stats_a), feature_measures(stats_b)
    found = []
    for feature in sorted(set(a) | set(b)):
        if feature not in a or feature not in b:
            found.append(FeatureChange(feature, 'feature', 'present' if feature in a else 'absent',
                                       'present' if feature in b else 'absent'))
            continue
        spread = max(a[feature].get('std') or 0.0, b[feature].get('std') or 0.0)
        found.extend(FeatureChange(feature, measure, value, b[feature].get(measure))
                     for measure, value in a[feature].items()
                     if _moved(measure, value, b[feature].get(measure), spread))
    return found


def slice_metrics(record_a: run_record.RunRecord, record_b: run_record.RunRecord) -> List[SliceMetrics]:
    """Candidate metrics per slice of both runs, every slice either has."""
    from components.artifact_contents import slice_order
    a, b = record_a.metrics(), record_b.metrics()

    def candidate(found, label):
        values = found.get(label, ({}, {}))[0]
        return {m: finite(values[m]) for m in METRICS if m in values}
    return [SliceMetrics(label, candidate(a, label), candidate(b, label))
            for label in sorted(set(a) | set(b), key=slice_order)]


def compare(a: run_record.RunRecord, b: run_record.RunRecord) -> Comparison:
    """What differed between run A and run B (B - A for metrics)."""
    facts_a, facts_b = _facts(a), _facts(b)
    code_a, code_b = facts_a.code or {}, facts_b.code or {}
    stats_a, stats_b = a.statistics('train'), b.statistics('train')
    missing = [name for name, stats in (('A', stats_a), ('B', stats_b)) if stats is None]
    return Comparison(
        a=facts_a, b=facts_b,
        parameters=_differences(facts_a.parameters, facts_b.parameters),
        code=_differences(code_a, code_b),
        data=_data_differences(facts_a, facts_b),
        features=feature_changes(stats_a, stats_b) if not missing else [],
        statistics_missing=(f'run {" and ".join(missing)} has no training statistics' if missing else None),
        slices=slice_metrics(a, b))


# Text.
def _show(value) -> str:
    """A value as the text and page show it: hex digests and commits shortened, floats to 4 places."""
    if isinstance(value, str) and len(value) == 64 and all(c in '0123456789abcdef' for c in value):
        return f'sha256:{value[:12]}'
    if isinstance(value, str) and len(value) == 40 and all(c in '0123456789abcdef' for c in value):
        return value[:12]
    return run_history.show(value)


def _setting(value) -> str:
    """A parameter as it was set (0.5, not 0.5000)."""
    return '-' if value is None else str(value)


def _pairs(differences: Sequence[Difference], show=_show) -> List[str]:
    width = max((len(d.name) for d in differences), default=0)
    return [f'  {d.name.ljust(width)}  {show(d.a)}  ->  {show(d.b)}' for d in differences]


def change(s: SliceMetrics, metric: str, arrow: str = '->') -> str:
    """One metric of a slice in both runs: `0.9507 -> 0.9372 (-0.0135)`; counts without the difference."""
    a, b, delta = s.a.get(metric), s.b.get(metric), s.delta(metric)
    if a is None and b is None:
        return '-'
    if metric == 'example_count':
        return f'{count_text(a)} {arrow} {count_text(b)}'
    return f'{_show(a)} {arrow} {_show(b)}' + (f' ({delta:+.4f})' if delta is not None else '')


def _metric_line(s: SliceMetrics, metrics: Sequence[str]) -> str:
    return f'  {s.slice}: ' + ', '.join(f'{m} {change(s, m)}' for m in metrics)


def _telling(s: SliceMetrics) -> bool:
    """A slice whose AUC change the text names: it changed, on enough examples in both runs to mean something."""
    counts = (s.a.get('example_count') or 0, s.b.get('example_count') or 0)
    return bool(s.delta('auc')) and min(counts) >= TEXT_SLICE_EXAMPLES


def _metrics_text(c: Comparison) -> List[str]:
    if not c.slices:
        return ['Metrics: neither run evaluated a model']
    if not c.metrics_differ:
        return [f'Metrics: the same on all {len(c.slices)} slices']
    lines = ['Metrics (candidate model; A -> B, change B - A):']
    overall = c.overall
    if overall is not None:
        lines.append(_metric_line(overall, METRICS))
    moved = sorted((s for s in c.slices if s is not overall and _telling(s)), key=lambda s: -abs(s.delta('auc')))
    if moved:
        lines.append(f'  largest AUC changes among slices of {TEXT_SLICE_EXAMPLES}+ examples in both runs '
                     f'(all {len(c.slices)} slices: --json, --html):')
        lines.extend('  ' + _metric_line(s, ('auc', 'example_count')) for s in moved[:TEXT_SLICES])
    one_sided = [s.slice for s in c.slices if not s.a or not s.b]
    if one_sided:
        lines.append(f'  in one run only: {", ".join(one_sided)}')
    return lines


def _side(label: str, facts: RunFacts) -> str:
    return (f'{label}: {facts.name} (started {facts.started} UTC, {facts.trigger or "trigger unknown"}, '
            f'{facts.outcome} in {run_history.duration(facts.seconds)})')


def _render_text(c: Comparison) -> str:
    lines = [_side('A', c.a), _side('B', c.b), '']
    differed = c.differed()
    lines.append(f'Differed: {", ".join(differed)}' if differed else
                 'Nothing differed: same parameters, code, data, training statistics and metrics.')
    if c.parameters:
        lines += ['Parameters:'] + _pairs(c.parameters, show=_setting)
    if c.code:
        lines += ['Code:'] + _pairs(c.code)
    if c.data:
        lines += ['Data:'] + _pairs(c.data)
    if c.statistics_missing:
        lines.append(f'Training statistics: not compared ({c.statistics_missing})')
    elif c.features:
        lines += ['Training statistics that moved (train split):'] + _pairs(
            [Difference(f'{f.feature} {f.measure}', f.a, f.b) for f in c.features]) + [f'  ({TOLERANCE_NOTE}.)']
    lines += _metrics_text(c)
    lines.append(f'Outcome: blessed {_show(c.a.blessed)} -> {_show(c.b.blessed)}; pushed version '
                 f'{_show(c.a.pushed_version)} -> {_show(c.b.pushed_version)}')
    return '\n'.join(lines)


# The page.
def _facts_rows(c: Comparison) -> List[List[str]]:
    rows = [('run', c.a.name, c.b.name), ('started (UTC)', c.a.started, c.b.started),
            ('trigger', c.a.trigger, c.b.trigger), ('outcome', c.a.outcome, c.b.outcome),
            ('duration', run_history.duration(c.a.seconds), run_history.duration(c.b.seconds)),
            ('span', c.a.span, c.b.span), ('commit', c.a.commit, c.b.commit),
            ('blessed', c.a.blessed, c.b.blessed), ('pushed version', c.a.pushed_version, c.b.pushed_version)]
    return [[name, _show(a), _show(b)] for name, a, b in rows]


def _differences_section(title: str, differences: Sequence[Difference], same: str, show=_show) -> Dict:
    return {'title': title, 'same': same, 'rows': [[d.name, show(d.a), show(d.b)] for d in differences]}


def _metrics(c: Comparison) -> Optional[Dict]:
    if not c.slices:
        return None
    overall = c.overall
    metrics = ('example_count',) + METRICS[:-1]
    return {'auc': {s.slice: (s.a.get('auc'), s.b.get('auc')) for s in c.slices},
            'names': (f'A {c.a.name}', f'B {c.b.name}'),
            'overall': ({m: overall.delta(m) for m in METRICS if m != 'example_count'}
                        if overall is not None else None),
            # Non-breaking spaces: a cell reads as one line, `0.9507 → 0.9372 (-0.0135)`.
            'rows': [[s.slice] + [change(s, m, arrow='→').replace(' ', '\u00a0') for m in metrics]
                     for s in c.slices]}


def page(comparison: Comparison, reports_dir: Optional[str]) -> str:
    """The comparison as a page: what differed first, then AUC per slice and the metric changes as
    charts, and the tables; links to both runs' reports and the runs page where those exist."""
    c = comparison
    here = reports_page.report_file(reports_page.COMPARISON, c.a.name, c.b.name)
    return reports_page.render(
        'comparison.html', title=f'Run {c.a.name} vs {c.b.name}',
        nav=reports_page.related(reports_dir, here, runs=[c.a.name, c.b.name]),
        differed=c.differed(), facts=_facts_rows(c),
        sections=[_differences_section('Parameters that differ', c.parameters, 'The same parameters.', show=_setting),
                  _differences_section('Code that differs', c.code, 'The same code.'),
                  _differences_section('Data that differs', c.data, 'The same span and rows per split.')],
        statistics_missing=c.statistics_missing, tolerance_note=TOLERANCE_NOTE,
        features=[[f.feature, f.measure, _show(f.a), _show(f.b)] for f in c.features], metrics=_metrics(c))
