"""What the run views component does with its artifacts: reads what the run
produced (statistics, anomalies, drift report, evaluation, blessing, push),
turns it into views (`views.py`), and writes them: metrics as custom
properties, the report and summary as files at their artifacts' URIs.

Custom properties of inputs are read through TFX's getters: on Kubeflow TFX's
entry point rebuilds each as a JSON value, where `.string_value` is empty.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import tensorflow_data_validation as tfdv
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components import artifact_contents
from components.anomalies_gate.executor import read_split_anomalies
from components.anomalies_gate.gate import describe
from components.drift_check import drift as drift_check
from components.run_views import views
from reports import page

TRAIN_SPLIT = 'train'


def _split_names(artifact):
    return artifact_utils.decode_split_names(artifact.split_names) if artifact.split_names else []


def _drift(report) -> views.Drift | None:
    keys = (drift_check.VERDICT, drift_check.DISTANCES, drift_check.BASELINE_VERSION)
    result = drift_check.result_from({key: report.get_string_custom_property(key) for key in keys
                                      if report.has_custom_property(key)})
    if result is None:
        return None
    return views.Drift(result.verdict, result.baseline_version, report.get_string_custom_property(drift_check.POLICY),
                       tuple(result.features))


def read_facts(statistics, anomalies, drift_report, evaluation, blessing, pushed_model) -> views.RunFacts:
    stats = {split: tfdv.load_stats_binary(os.path.join(statistics.uri, f'Split-{split}', 'FeatureStats.pb'))
             for split in _split_names(statistics)}
    slices = artifact_contents.metrics_by_slice(evaluation.uri)
    pushed = pushed_model.get_int_custom_property('pushed') == 1
    return views.RunFacts(
        slices=OrderedDict(sorted(slices.items(), key=lambda item: artifact_contents.slice_order(item[0]))),
        matrices=artifact_contents.confusion_matrices(evaluation.uri),
        blessed=blessing.get_int_custom_property('blessed') == 1,
        pushed_to=pushed_model.get_string_custom_property('pushed_destination') if pushed else None,
        rows={split: int(s.datasets[0].num_examples) for split, s in stats.items()},
        anomalies={split: describe(read_split_anomalies(anomalies.uri, split)) for split in _split_names(anomalies)},
        drift=_drift(drift_report),
        statistics=artifact_contents.statistics_rows(stats[TRAIN_SPLIT]) if TRAIN_SPLIT in stats else ())


def _write(artifact, text: str) -> None:
    fileio.makedirs(os.path.dirname(artifact.uri))
    artifact.write(text)


def make_views(statistics, anomalies, drift_report, evaluation, blessing, pushed_model,
               metrics, classification_metrics, report, summary) -> None:
    facts = read_facts(statistics, anomalies, drift_report, evaluation, blessing, pushed_model)
    for key, value in views.scalar_metrics(facts).items():
        metrics.set_float_custom_property(key, value)
    for key, value in views.classification_metrics(facts.matrices).items():
        classification_metrics.set_json_value_custom_property(key, value)
    _write(report, page.render('run_views.html', title='Run views', nav=[],
                               columns=artifact_contents.STATISTICS_COLUMNS, **views.page_context(facts)))
    _write(summary, views.summary_markdown(facts, {'report (HTML)': report.uri, 'evaluation (TFMA)': evaluation.uri,
                                                   'statistics (TFDV)': statistics.uri}))
