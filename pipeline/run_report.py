"""A self-contained HTML report of one run: what ran, how the model did per
slice, what drives its predictions and how many eval examples it flags as
outliers, what the data looked like, and where it departs from the curated schema.

TFDV's and TFMA's own visualisations need a notebook or a CDN; this page opens
from disk anywhere, including a build artifact viewer.
"""

from __future__ import annotations

import html
import os
from typing import List, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

import schemas
from atomic_file import write_atomically
from components.anomalies_gate import describe, read_split_anomalies
from components import drift_check
from components.baseline_model import SERVING_SUBDIR
from pipeline import html_page, model_insights, svg_charts
from pipeline.run_summary import RunSummary, metrics_by_slice, slice_order, statistics_rows
from pipeline.schema_review import differences
from taxi_model.preprocessing import OUTLIER_SHARE

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


def _drift_section(result: RunSummary) -> str:
    drift = result.drift
    if drift.verdict == drift_check.NO_BASELINE:
        return ('<h2>Drift</h2><p>Not checked: nothing was pushed yet, or the pushed version carries no '
                'training statistics.</p>')
    verdict = (f'<span class="bad">DRIFT in {html.escape(", ".join(drift.drifted))}</span> (policy '
               f'{html.escape(result.drift_policy or "?")})' if drift.drifted else '<span class="good">none</span>')
    return ''.join([
        f'<h2>Drift vs the data serving version {html.escape(str(drift.baseline_version))} was trained on: '
        f'{verdict}</h2>',
        '<p>TFDV drift comparators of the curated schema, new span vs the training split the serving '
        'version carries.</p>',
        html_page.distances(drift.features, beyond='DRIFT')])


def _insights_section(insights) -> str:
    if insights is None:
        return '<h2>Feature importance</h2><p>The model has no explain signature.</p>'
    share = insights.outlier_share
    flagged = ', '.join(f'{name} {value:.1%}' for name, value in insights.flagged_share.items()) or 'none'
    return ''.join([
        f'<h2>Feature importance ({insights.examples} eval examples)</h2>',
        '<p>Mean absolute attribution of each raw feature (integrated gradients, in log-odds): how far, '
        'on average, it moves a prediction away from that of the average training example.</p>',
        svg_charts.bar_chart(insights.importance),
        '<h2>Outliers in the eval split</h2>',
        f'<p class="{"bad" if share > 0.05 else "good"}" id="outlier-share">{share:.1%} of {insights.examples} '
        f'eval examples flagged as outliers (the threshold flags {OUTLIER_SHARE:.0%} of training examples).</p>',
        f'<p>Outside the schema or vocabulary: {html.escape(flagged)}</p>'])


def render(result: RunSummary, reports_dir: Optional[str] = None) -> str:
    """The page; `reports_dir` is where it is written, for links to the related reports there."""
    parts = [f'<h1>Run {html.escape(result.run_id)}</h1>']
    status = 'succeeded' if result.succeeded else 'FAILED'
    parts.append(f'<p class="{"good" if result.succeeded else "bad"}">{status} in {result.wall_seconds:.1f}s</p>')
    if result.failure:
        parts.append(f'<pre class="bad">{html.escape(result.failure)}</pre>')
    parts.append('<h2>Components</h2>')
    parts.append(html_page.table(['component', 'state', 'seconds'],
                        [[c.node_id, c.state, c.seconds] for c in result.components]))

    if result.drift is not None:
        parts.append(_drift_section(result))

    evaluation = result.outputs.get('Evaluator', {}).get('evaluation')
    if evaluation:
        blessed = 'blessed' if result.blessed else 'NOT blessed'
        parts.append(f'<h2>Evaluation: <span class="{"good" if result.blessed else "bad"}">{blessed}</span></h2>')
        if result.pushed_to:
            parts.append(f'<p>Pushed to <code>{html.escape(result.pushed_to)}</code></p>')
        if result.baseline_metrics:
            parts.append('<p>Baseline (latest pushed model): ' + html.escape(
                ', '.join(f'{k}={v:.4f}' for k, v in sorted(result.baseline_metrics.items()))) + '</p>')
        parts.append(html_page.table(['slice', 'examples', 'AUC', 'accuracy', 'precision', 'recall'],
                            _slice_rows(evaluation)))

    model = result.outputs.get('Trainer', {}).get('model')
    examples = result.outputs.get('CsvExampleGen', {}).get('examples')
    if model and examples and os.path.exists(os.path.join(model, SERVING_SUBDIR)):
        parts.append(_insights_section(model_insights.explain_eval_split(os.path.join(model, SERVING_SUBDIR),
                                                                           examples)))

    anomalies = result.outputs.get('ExampleValidator', {}).get('anomalies')
    if anomalies:
        found = [(split, line) for split in ('train', 'eval')
                 for line in describe(read_split_anomalies(anomalies, split))]
        parts.append('<h2>Data anomalies</h2>')
        parts.append(html_page.table(['split', 'anomaly'], found) if found else '<p class="good">none</p>')

    draft = result.outputs.get('DraftSchemaGen', {}).get('schema')
    if draft:
        diffs = differences(tfdv.load_schema_text(schemas.CURATED_SCHEMA),
                            tfdv.load_schema_text(os.path.join(draft, 'schema.pbtxt')))
        parts.append('<h2>Inferred schema vs curated schema</h2>')
        parts.append(html_page.table(['difference'], [[d] for d in diffs]) if diffs else '<p>no differences</p>')

    statistics = result.outputs.get('StatisticsGen', {}).get('statistics')
    if statistics:
        stats = tfdv.load_stats_binary(os.path.join(statistics, 'Split-train', 'FeatureStats.pb'))
        parts.append(f'<h2>Training data ({stats.datasets[0].num_examples} examples)</h2>')
        parts.append(html_page.table(['feature', 'type', 'present', 'missing', 'mean', 'std', 'min', 'max', 'values'],
                            _statistics_rows(stats)))
    versions = [os.path.basename(result.pushed_to.rstrip('/'))] if result.pushed_to else []
    nav = html_page.related(reports_dir, html_page.report_file(html_page.RUN, result.run_id), runs=[result.run_id],
                            versions=versions)
    return html_page.page(f'Run {result.run_id}', parts, nav=nav)


def write(result: RunSummary, path: str) -> str:
    return write_atomically(path, render(result, os.path.dirname(path)))
