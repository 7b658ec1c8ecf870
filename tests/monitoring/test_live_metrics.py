"""Live metrics behave as metrics should on samples whose truth is known by construction."""

import numpy as np
import pytest

from monitoring import live_metrics

pytestmark = pytest.mark.unit


def _sample(n, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    return rng, scores


def test_scores_that_rank_perfectly_have_auc_and_accuracy_one():
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)])
    metrics = live_metrics.compute(labels, scores)
    assert metrics.auc == 1.0 and metrics.accuracy == 1.0
    assert (metrics.examples, metrics.positives) == (100, 50)


def test_uninformative_scores_have_an_auc_interval_around_one_half():
    rng, scores = _sample(4000)
    labels = rng.integers(0, 2, 4000)
    metrics = live_metrics.compute(labels, scores)
    assert metrics.auc_ci[0] < 0.5 < metrics.auc_ci[1]
    assert metrics.accuracy_ci[0] < 0.5 < metrics.accuracy_ci[1]


def test_intervals_narrow_as_labels_accumulate():
    widths = []
    for n in (200, 2000, 20000):
        rng, scores = _sample(n, seed=n)
        labels = (rng.uniform(0, 1, n) < scores).astype(int)
        metrics = live_metrics.compute(labels, scores)
        widths.append((metrics.auc_ci[1] - metrics.auc_ci[0], metrics.accuracy_ci[1] - metrics.accuracy_ci[0]))
    assert widths[0][0] > widths[1][0] > widths[2][0]
    assert widths[0][1] > widths[1][1] > widths[2][1]


def test_calibrated_scores_have_a_small_calibration_error_and_overconfident_ones_a_large_one():
    rng, scores = _sample(20000, seed=3)
    labels = (rng.uniform(0, 1, 20000) < scores).astype(int)
    calibrated = live_metrics.compute(labels, scores)
    overconfident = live_metrics.compute(labels, np.clip((scores - 0.5) * 3 + 0.5, 0, 1))
    assert calibrated.calibration_error < 0.02 < overconfident.calibration_error
    assert all(abs(b.mean_predicted - b.observed_rate) < 0.05 for b in calibrated.calibration)
    assert sum(b.examples for b in calibrated.calibration) == 20000


def test_one_class_leaves_auc_undefined_but_accuracy_judged():
    metrics = live_metrics.compute(np.ones(30, dtype=int), np.full(30, 0.9))
    assert metrics.auc is None and metrics.auc_ci is None
    assert metrics.accuracy == pytest.approx(1.0)


def test_too_few_of_a_class_gives_an_auc_interval_that_claims_nothing():
    metrics = live_metrics.compute(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]))
    assert metrics.auc == 1.0 and metrics.auc_ci == (0.0, 1.0)
