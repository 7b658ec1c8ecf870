"""What a run's views say, from plain values: the scalar metrics, the ROC curve
and confusion matrix in the shapes the Kubeflow Pipelines UI reads, and the
one-screen summary. No TFX here; `executor.py` reads the artifacts.

Shapes (kubeflow/pipelines sdk/python/kfp/dsl/types/artifact_types.py, read by
frontend/src/components/viewers/MetricsVisualizations.tsx):
- system.Metrics: one number per metadata key, shown as a table;
- system.ClassificationMetrics: `confidenceMetrics`, a list of
  {confidenceThreshold, recall, falsePositiveRate} (the ROC curve), and
  `confusionMatrix`, {annotationSpecs: [{displayName}], rows: [{row: [...]}]}
  (the SDK's log_confusion_matrix stores it so; categories and matrix are only
  that method's arguments).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from components.drift_check.drift import FeatureDrift

OVERALL = 'overall'
# The evaluation's metrics shown per slice, in this order.
METRICS = ('auc', 'binary_accuracy', 'precision', 'recall', 'example_count')
# The label's classes, negative first (a confusion matrix's rows: actual, columns: predicted).
CLASSES = ('no tip', 'tip')


@dataclasses.dataclass(frozen=True)
class Drift:
    verdict: str
    baseline_version: Optional[str]
    policy: str
    features: Tuple[FeatureDrift, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What the views are made of; each part None when the run did not produce it."""
    slices: Mapping[str, Tuple[Mapping[str, float], Mapping[str, float]]]  # label -> (candidate, baseline)
    matrices: Sequence[Tuple[float, int, int, int, int]]  # (threshold, tp, fp, tn, fn)
    blessed: Optional[bool]
    pushed_to: Optional[str]
    rows: Mapping[str, int]  # split -> examples
    anomalies: Mapping[str, List[str]]  # split -> one line per anomaly
    drift: Optional[Drift]
    statistics: Sequence[Sequence] = ()  # the training split's features, artifact_contents.STATISTICS_COLUMNS

    @property
    def overall(self) -> Tuple[Mapping[str, float], Mapping[str, float]]:
        return self.slices.get(OVERALL, ({}, {}))


def _finite(value) -> Optional[float]:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def scalar_metrics(facts: RunFacts) -> Dict[str, float]:
    """system.Metrics: the candidate's metrics overall (`auc`) and per slice (`auc | trip_start_hour=3`),
    the baseline's overall (`baseline auc`), drift distances (`drift | fare`), rows per split
    (`rows | train`), anomalies per split. NaN and infinite values are left out: JSON has neither."""
    result = {}
    for label, (candidate, baseline) in facts.slices.items():
        for name in METRICS:
            key = name if label == OVERALL else f'{name} | {label}'
            if _finite(candidate.get(name)) is not None:
                result[key] = _finite(candidate[name])
            if label == OVERALL and _finite(baseline.get(name)) is not None:
                result[f'baseline {name}'] = _finite(baseline[name])
    if facts.drift is not None:
        for finding in facts.drift.features:
            if _finite(finding.value) is not None:
                result[f'drift | {finding.feature}'] = _finite(finding.value)
    for split, count in facts.rows.items():
        result[f'rows | {split}'] = float(count)
    for split, lines in facts.anomalies.items():
        result[f'anomalies | {split}'] = float(len(lines))
    return result


def classification_metrics(matrices: Sequence[Tuple[float, int, int, int, int]],
                           threshold: float = 0.5) -> Dict[str, object]:
    """system.ClassificationMetrics: the ROC curve over every threshold, and the confusion matrix at
    `threshold` (the nearest one measured); {} without matrices."""
    if not matrices:
        return {}
    roc = []
    for t, tp, fp, tn, fn in matrices:
        roc.append({'confidenceThreshold': t, 'recall': tp / (tp + fn) if tp + fn else 0.0,
                    'falsePositiveRate': fp / (fp + tn) if fp + tn else 0.0})
    _, tp, fp, tn, fn = min(matrices, key=lambda m: abs(m[0] - threshold))
    return {'confidenceMetrics': roc,
            'confusionMatrix': {'annotationSpecs': [{'displayName': c} for c in CLASSES],
                                'rows': [{'row': [tn, fp]}, {'row': [fn, tp]}]}}


def verdict(facts: RunFacts) -> str:
    if facts.blessed is None:
        return 'not evaluated'
    if not facts.blessed:
        return 'NOT blessed: not pushed'
    return f'blessed, pushed to {facts.pushed_to}' if facts.pushed_to else 'blessed, not pushed'


def drift_line(drift: Optional[Drift]) -> str:
    if drift is None:
        return 'not checked'
    if not drift.baseline_version or drift.verdict == 'no baseline':
        return 'not checked: no pushed version to compare with'
    drifted = [f.feature for f in drift.features if f.drifted]
    if not drifted:
        return f'none against the data version {drift.baseline_version} was trained on'
    return (f'DRIFT in {", ".join(drifted)} against the data version {drift.baseline_version} was trained on '
            f'(policy: {drift.policy})')


def summary_markdown(facts: RunFacts, views: Mapping[str, str]) -> str:
    """system.Markdown: the run on one screen, and where its views are (`views`: name -> URI)."""
    candidate, baseline = facts.overall
    lines = [f'## Model: {verdict(facts)}', '', '| metric | this model | latest pushed |', '| --- | --- | --- |']
    for name in METRICS:
        if name in candidate:
            lines.append(f'| {name} | {_number(candidate.get(name))} | {_number(baseline.get(name))} |')
    lines += ['', f'**Drift:** {drift_line(facts.drift)}', '',
              '**Data:** ' + ', '.join(f'{split} {count:,} rows' for split, count in facts.rows.items()), '',
              '**Anomalies:** ' + ('; '.join(f'{split}: {"; ".join(found)}' for split, found in facts.anomalies.items()
                                             if found) or 'none'),
              '', '**Views of this run** (in the run\'s artifacts):']
    lines += [f'- {name}: `{uri}`' for name, uri in views.items()]
    return '\n'.join(lines) + '\n'


def _number(value) -> str:
    if _finite(value) is None:
        return 'n/a'
    return f'{value:,.0f}' if float(value).is_integer() and abs(value) >= 1 else f'{value:.4f}'


def _blank(value):
    """A table cell: '' where there is no value (a metric undefined on a slice, a column that does not apply)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ''
    return value


def _confusion_rows(matrix: Optional[Mapping]) -> Optional[List[list]]:
    """The confusion matrix as table rows: the actual class, then the counts per predicted class."""
    if not matrix:
        return None
    names = [spec['displayName'] for spec in matrix['annotationSpecs']]
    return [[f'actual {name}'] + list(row['row']) for name, row in zip(names, matrix['rows'])]


def page_context(facts: RunFacts) -> Dict[str, object]:
    """What reports/templates/run_views.html shows."""
    classification = classification_metrics(facts.matrices)
    slices = [[label, *(_blank(c.get(name)) for name in METRICS)] for label, (c, _) in facts.slices.items()]
    return {
        'verdict': verdict(facts), 'blessed': facts.blessed,
        'overall': [[name, _blank(facts.overall[0].get(name)), _blank(facts.overall[1].get(name))]
                    for name in METRICS if name in facts.overall[0]],
        'slices': slices,
        'auc_by_slice': {label: {'AUC': _finite(c.get('auc'))} for label, (c, _) in facts.slices.items()},
        'roc': [(p['falsePositiveRate'], p['recall']) for p in classification.get('confidenceMetrics', [])],
        'confusion': _confusion_rows(classification.get('confusionMatrix')),
        'drift': facts.drift, 'drift_line': drift_line(facts.drift), 'classes': CLASSES,
        'rows': dict(facts.rows), 'anomalies': dict(facts.anomalies),
        'statistics': [[_blank(v) for v in row] for row in facts.statistics],
    }
