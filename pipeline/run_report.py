"""The report of one run: what ran, how the model did per slice, what drives its
predictions and how many eval examples it flags as outliers, what the data
looked like, and where it departs from the curated schema.

Gathered here from the run's outputs; laid out by `reports` (templates/run_report.html).
TFDV's and TFMA's own visualisations need a notebook or a CDN; this page opens
from disk anywhere, including a build artifact viewer.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import tensorflow as tf

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

import schemas
from components.anomalies_gate.executor import read_split_anomalies
from components.anomalies_gate.gate import describe
from components.artifact_contents import metrics_by_slice, slice_order, statistics_rows
from components import slice_gates
from components.baseline_model import SERVING_SUBDIR
from components.drift_check import drift as drift_check
from foundation.atomic_file import write_atomically
from pipeline import model_insights
from pipeline.run_summary import RunSummary
from pipeline.schema_review import differences
from reports import page as reports_page
from taxi_model.preprocessing import OUTLIER_SHARE

# Under the reports directory: the eval split's insights per model and split (pipeline/model_insights.py `cached`).
INSIGHTS_CACHE = '.insights'


def _statistics_rows(stats: statistics_pb2.DatasetFeatureStatisticsList) -> List[list]:
    """statistics_rows with '' where a column does not apply, a string's unique and top values in one column."""
    return [['' if v is None else v for v in numbers] + [f'{unique} unique; top: {top}' if unique is not None else '']
            for *numbers, unique, top in statistics_rows(stats)]


def _slice_rows(evaluation_uri: str) -> List[list]:
    nan = float('nan')
    rows = [[label, int(values.get('example_count', 0)), values.get('auc', nan), values.get('binary_accuracy', nan),
             values.get('precision', nan), values.get('recall', nan)]
            for label, (values, _) in metrics_by_slice(evaluation_uri).items()]
    return sorted(rows, key=lambda row: slice_order(row[0]))


def _gate_rows(gates: List[slice_gates.Gate]) -> List[list]:
    """A row per gate the Evaluator applied: slice, gate, rule, bound, measured, margin (signed: negative is
    the wrong side of the bound), verdict; failed gates first, then slice gates."""
    def number(value, form):
        return '-' if value is None else format(value, form)
    return [[g.slice, g.gate, g.rule, f'{g.bound:g}', number(g.measured, '.4f'), number(g.margin, '+.4f'),
             {True: 'passed', False: 'FAILED', None: 'not applied (no baseline)'}[g.passed]]
            for g in sorted(gates, key=lambda g: (g.passed is not False, g.slice == slice_gates.OVERALL))]


def _unjudged_rows(result: RunSummary) -> List[list]:
    return [[c.label, c.positives, c.negatives] for c in result.gated_slices if not c.judged]


def _drift(result: RunSummary) -> Optional[dict]:
    drift = result.drift
    if drift is None:
        return None
    if drift.verdict == drift_check.NO_BASELINE:
        return {'checked': False}
    return {'checked': True, 'baseline_version': drift.baseline_version, 'drifted': drift.drifted,
            'policy': result.drift_policy, 'features': drift.features}


def _infra(result) -> Optional[Dict]:
    """The infra validation's verdict and every check, from the report beside its blessing."""
    if result.infra is None:
        return None
    uri = result.outputs.get('InfraValidation', {}).get('blessing')
    path = os.path.join(uri, 'infra_validation.json') if uri else None
    recorded = json.loads(tf.io.gfile.GFile(path).read()) if path and tf.io.gfile.exists(path) else {}
    return {**result.infra, 'checks': [[c['name'], 'pass' if c['passed'] else 'FAIL', c['detail']]
                                       for c in recorded.get('checks', [])]}


def _insights(result: RunSummary, reports_dir: Optional[str] = None) -> Optional[dict]:
    """Feature importance and outliers of the eval split; None where the run left no model to explain.
    With `reports_dir`, kept in its INSIGHTS_CACHE for the next page of the same model and split."""
    model = result.outputs.get('Trainer', {}).get('model')
    examples = result.outputs.get('CsvExampleGen', {}).get('examples')
    if not (model and examples and os.path.exists(os.path.join(model, SERVING_SUBDIR))):
        return None
    model_dir = os.path.join(model, SERVING_SUBDIR)
    insights = (model_insights.cached(model_dir, examples, os.path.join(reports_dir, INSIGHTS_CACHE)) if reports_dir
                else model_insights.explain_eval_split(model_dir, examples))
    if insights is None:
        return {'explained': False}
    return {'explained': True, 'examples': insights.examples, 'importance': insights.importance,
            'outlier_share': insights.outlier_share, 'training_share': OUTLIER_SHARE,
            'flagged_share': insights.flagged_share}


def _tuning(result: RunSummary) -> Optional[Dict]:
    """Where the Trainer's hyperparameters came from and, for a tuning, every trial: values, validation AUC,
    seconds; the chart shows each trial's AUC, the best one first."""
    tuning = result.tuning
    if tuning is None:
        return None
    trials = sorted(tuning['trials'], key=lambda t: -(t['score'] if t['score'] is not None else -1))

    def label(trial):
        return ', '.join(f'{k}={v}' for k, v in sorted(trial['values'].items()))
    return {**tuning, 'values': ', '.join(f'{k}={v}' for k, v in sorted(tuning['hyperparameters'].items())),
            'chart': {f'trial {t["trial_id"]}: {label(t)}': t['score'] for t in trials if t['score'] is not None},
            'rows': [[t['trial_id'], label(t), '-' if t['score'] is None else f'{t["score"]:.4f}', t['status'],
                      '-' if t.get('seconds') is None else f'{t["seconds"]:.1f}'] for t in trials]}


def render(result: RunSummary, reports_dir: Optional[str] = None) -> str:
    """The page; `reports_dir` is where it is written, for links to the related reports there."""
    evaluation = result.outputs.get('Evaluator', {}).get('evaluation')
    anomalies = result.outputs.get('ExampleValidator', {}).get('anomalies')
    draft = result.outputs.get('DraftSchemaGen', {}).get('schema')
    statistics = result.outputs.get('StatisticsGen', {}).get('statistics')
    stats = (tfdv.load_stats_binary(os.path.join(statistics, 'Split-train', 'FeatureStats.pb'))
             if statistics else None)
    versions = ([os.path.basename(result.pushed_to.rstrip('/'))] if result.pushed_to
                else [str(result.push_cached[0])] if result.push_cached else [])
    return reports_page.render(
        'run_report.html', title=f'Run {result.run_id}',
        nav=reports_page.related(reports_dir, reports_page.report_file(reports_page.RUN, result.run_id),
                                 runs=[result.run_id], versions=versions),
        run_id=result.run_id, succeeded=result.succeeded, wall_seconds=result.wall_seconds, failure=result.failure,
        components=[[c.node_id, c.state, c.seconds] for c in result.components],
        drift=_drift(result), tuning=_tuning(result), scored=result.scored,
        evaluation={'blessed': result.blessed, 'pushed_to': result.pushed_to, 'push_cached': result.push_cached,
                    'baseline_metrics': result.baseline_metrics, 'slices': _slice_rows(evaluation),
                    'refusal': result.refusal, 'gates': _gate_rows(result.gates),
                    'unjudged': _unjudged_rows(result), 'min_class_examples': result.min_slice_class_examples}
        if evaluation else None,
        infra=_infra(result),
        insights=_insights(result, reports_dir),
        anomalies=[(split, line) for split in ('train', 'eval')
                   for line in describe(read_split_anomalies(anomalies, split))] if anomalies else None,
        schema_differences=[[d] for d in differences(tfdv.load_schema_text(schemas.CURATED_SCHEMA),
                                                     tfdv.load_schema_text(os.path.join(draft, 'schema.pbtxt')))]
        if draft else None,
        statistics={'examples': stats.datasets[0].num_examples, 'rows': _statistics_rows(stats)}
        if stats is not None else None)


def write(result: RunSummary, path: str) -> str:
    return write_atomically(path, render(result, os.path.dirname(path)))
