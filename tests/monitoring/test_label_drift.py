"""Label drift and concept drift, apart: a label rate that moved is tested against chance and a
threshold; performance that fell where the inputs did not is concept drift, and only then."""

import numpy as np
import pytest

from monitoring import label_drift
from monitoring.performance_estimation import Comparison, Estimate, MetricEstimate

pytestmark = pytest.mark.unit


def _labels(rate, n, seed=0):
    return (np.random.default_rng(seed).uniform(0, 1, n) < rate).astype(int)


def test_a_window_like_the_reference_has_not_drifted():
    found = label_drift.label_drift(_labels(0.23, 1000), reference_rate=0.23, reference_examples=5000)
    assert not found.drifted
    assert found.interval[0] < 0 < found.interval[1]
    assert found.p_value > label_drift.ALPHA


def test_a_moved_label_rate_drifts_with_its_direction_and_size():
    found = label_drift.label_drift(_labels(0.45, 1000), reference_rate=0.23, reference_examples=5000)
    assert found.drifted
    assert 0.15 < found.difference < 0.3 and found.interval[0] > 0.1
    assert found.rate == pytest.approx(found.positives / 1000)
    fewer = label_drift.label_drift(_labels(0.05, 1000), reference_rate=0.23, reference_examples=5000)
    assert fewer.drifted and fewer.interval[1] < 0
    assert set(found.record()) >= {'label_rate', 'reference_rate', 'difference', 'ci95', 'p_value'}


def test_a_significant_change_below_the_threshold_is_not_drift():
    found = label_drift.label_drift(_labels(0.25, 200_000), reference_rate=0.23, reference_examples=200_000)
    assert found.p_value < label_drift.ALPHA
    assert not found.drifted


def test_undrifted_windows_rarely_alert():
    alerts = sum(label_drift.label_drift(_labels(0.23, 500, seed), 0.23, 5000).drifted for seed in range(300))
    assert alerts <= 6


def test_too_few_labels_are_not_judged():
    assert label_drift.label_drift(_labels(0.9, 50), 0.23, 5000) is None


def _estimate(accuracy=0.88, auc=0.94, examples=1000):
    return Estimate(examples, 0.23,
                    MetricEstimate('accuracy', accuracy, (accuracy - 0.02, accuracy + 0.02), 0.01, 0.89),
                    MetricEstimate('auc', auc, (auc - 0.015, auc + 0.015), 0.007, 0.945))


def test_performance_below_the_estimate_with_undrifted_inputs_is_concept_drift():
    estimate = _estimate()
    comparisons = [Comparison('accuracy', 0.88, (0.86, 0.90), 0.80), Comparison('auc', 0.94, (0.925, 0.955), 0.93)]
    found = label_drift.concept_drift(comparisons, estimate, inputs_drifted=False)
    assert found.signal and found.below_estimate == ['accuracy'] and found.dropped == ['accuracy']
    # With drifted inputs the drop is reported, not called concept drift: the calibration may not reach there.
    drifted = label_drift.concept_drift(comparisons, estimate, inputs_drifted=True)
    assert not drifted.signal and drifted.dropped == ['accuracy']


def test_a_drop_the_estimate_foresaw_is_not_concept_drift():
    # Far below the reference, but so was the estimate, and the realised value is inside its interval.
    estimate = _estimate(accuracy=0.70, auc=0.80)
    comparisons = [Comparison('accuracy', 0.70, (0.68, 0.72), 0.71), Comparison('auc', 0.80, (0.785, 0.815), 0.79)]
    found = label_drift.concept_drift(comparisons, estimate, inputs_drifted=False)
    assert not found.signal and found.dropped == []


def test_below_the_reference_where_the_estimate_was_not_is_concept_drift():
    estimate = _estimate()
    # Inside a (wide) interval, but more than three sampling errors below the reference (0.945 - 3 * 0.007).
    comparisons = [Comparison('accuracy', 0.88, (0.80, 0.95), 0.87), Comparison('auc', 0.94, (0.90, 0.97), 0.91)]
    found = label_drift.concept_drift(comparisons, estimate, inputs_drifted=False)
    assert found.signal and found.below_reference == ['auc'] and found.below_estimate == []
    assert label_drift.concept_drift(comparisons, _estimate(examples=20), inputs_drifted=False) is None
