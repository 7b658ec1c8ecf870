"""The run views' plain logic: what the Kubeflow Pipelines UI is given, in the shapes the
KFP SDK's own artifact classes store (checked against the SDK), and the summary."""

import math

import pytest
from kfp import dsl

from components.drift_check.drift import FeatureDrift
from components.run_views import views

pytestmark = pytest.mark.unit

MATRICES = [(0.0, 40, 60, 0, 0), (0.5, 30, 10, 50, 10), (1.0, 0, 0, 60, 40)]


def facts(**changes):
    base = dict(
        slices={'overall': ({'auc': 0.91, 'binary_accuracy': 0.88, 'example_count': 100.0}, {'auc': 0.9}),
                'trip_start_hour=3': ({'auc': float('nan'), 'example_count': 4.0}, {})},
        matrices=MATRICES, blessed=True, pushed_to='gs://b/serving/17',
        rows={'train': 200, 'eval': 100}, anomalies={'train': [], 'eval': ['fare: anomaly (low)']},
        drift=views.Drift('drift', '16', 'warn', (FeatureDrift('fare', 'L-infinity', 0.3, '0.1', True),
                                                 FeatureDrift('tips', 'L-infinity', 0.01, '0.1', False))))
    base.update(changes)
    return views.RunFacts(**base)


def test_scalar_metrics_name_overall_slice_baseline_drift_rows_and_anomalies():
    metrics = views.scalar_metrics(facts())
    assert metrics['auc'] == 0.91 and metrics['baseline auc'] == 0.9
    assert metrics['example_count | trip_start_hour=3'] == 4.0
    assert 'auc | trip_start_hour=3' not in metrics  # NaN: JSON has none, the UI would show garbage
    assert metrics['drift | fare'] == 0.3 and metrics['rows | train'] == 200.0
    assert metrics['anomalies | eval'] == 1.0 and metrics['anomalies | train'] == 0.0
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_roc_curve_and_confusion_matrix_are_stored_as_the_kfp_sdk_stores_them():
    ours = views.classification_metrics(MATRICES)
    sdk = dsl.ClassificationMetrics(name='classification_metrics')
    for threshold, tp, fp, tn, fn in MATRICES:
        sdk.log_roc_data_point(fpr=fp / (fp + tn), tpr=tp / (tp + fn), threshold=threshold)
    sdk.log_confusion_matrix(list(views.CLASSES), [[50, 10], [10, 30]])  # at 0.5: actual rows, predicted columns
    assert ours == sdk.metadata


def test_the_confusion_matrix_is_the_one_nearest_the_threshold_and_nothing_without_matrices():
    nearest = views.classification_metrics(MATRICES, threshold=0.9)['confusionMatrix']['rows']
    assert nearest == [{'row': [60, 0]}, {'row': [40, 0]}]
    assert views.classification_metrics([]) == {}


@pytest.mark.parametrize('change, expected', [
    ({}, 'blessed, pushed to gs://b/serving/17'),
    ({'blessed': False, 'pushed_to': None}, 'NOT blessed: not pushed'),
    ({'blessed': None, 'pushed_to': None}, 'not evaluated'),
])
def test_the_verdict(change, expected):
    assert views.verdict(facts(**change)) == expected


def test_drift_line_names_drifted_features_the_baseline_and_the_policy():
    assert views.drift_line(facts().drift) == 'DRIFT in fare against the data version 16 was trained on (policy: warn)'
    assert views.drift_line(views.Drift('no baseline', None, 'warn')).startswith('not checked')
    assert views.drift_line(None) == 'not checked'


def test_summary_is_one_screen_with_the_verdict_metrics_drift_data_and_where_the_views_are():
    text = views.summary_markdown(facts(), {'report (HTML)': 'gs://b/run/report'})
    assert text.startswith('## Model: blessed, pushed to gs://b/serving/17')
    assert '| auc | 0.9100 | 0.9000 |' in text and '| example_count | 100 | n/a |' in text
    assert '**Drift:** DRIFT in fare' in text and 'train 200 rows, eval 100 rows' in text
    assert '**Anomalies:** eval: fare: anomaly (low)' in text and '- report (HTML): `gs://b/run/report`' in text
    assert len(text.splitlines()) < 40


def test_page_context_leaves_cells_blank_where_there_is_no_value():
    context = views.page_context(facts())
    assert context['overall'][0] == ['auc', 0.91, 0.9] and context['overall'][1] == ['binary_accuracy', 0.88, '']
    assert context['slices'][1][1] == ''  # NaN AUC on a slice
    assert context['confusion'] == [['actual no tip', 50, 10], ['actual tip', 10, 30]]
    assert context['roc'][0] == (1.0, 1.0)
