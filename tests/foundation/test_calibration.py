"""The calibration a model carries: an isotonic fit that never claims certainty it has not seen, the
expected metrics calibrated probabilities imply, and a file that reads back as it was written."""

import json

import numpy as np
import pytest
from sklearn import isotonic, metrics

from foundation import calibration
from monitoring import live_metrics

pytestmark = pytest.mark.unit


def _world(n, seed=0):
    """Scores from a model whose probabilities are too high: the truth is score squared."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    return scores, (rng.uniform(0, 1, n) < scores ** 2).astype(int)


def test_the_fit_is_monotone_and_follows_scikit_learns_isotonic_regression():
    scores, labels = _world(4000)
    x, y = calibration.isotonic_breakpoints(scores, labels)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    grid = np.linspace(-0.1, 1.1, 500)
    plain = isotonic.IsotonicRegression(out_of_bounds='clip').fit(scores, labels).predict(grid)
    ours = np.interp(grid, x, y)
    # Each piece's rate moves from k/w to (k + 1/2)/(w + 1): at most 1/2(w + 1) on pieces of some size.
    assert np.max(np.abs(ours - plain)) < 0.1
    assert np.mean(np.abs(ours - plain)) < 0.01


def test_a_piece_without_a_positive_says_rarely_not_never():
    scores = np.concatenate([np.linspace(0.0, 0.1, 2000), np.linspace(0.6, 1.0, 500)])
    labels = np.concatenate([np.zeros(2000, int), np.ones(500, int)])
    x, y = calibration.isotonic_breakpoints(scores, labels)
    low = np.interp(0.05, x, y)
    assert 0 < low < 1 / 2000
    assert np.interp(0.9, x, y) < 1


def test_expected_auc_of_known_labels_is_their_realised_auc_ties_included():
    rng = np.random.default_rng(3)
    scores = np.round(rng.uniform(0, 1, 3000), 2)  # many ties
    labels = (rng.uniform(0, 1, 3000) < scores).astype(int)
    assert calibration.expected_auc(scores, labels.astype(float)) == pytest.approx(
        metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert calibration.realised_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert calibration.realised_auc(scores, np.zeros(3000)) is None


def test_expected_metrics_are_what_labels_drawn_from_the_calibrated_probabilities_average_to():
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 2000)
    probability = scores ** 2
    accuracies, aucs = [], []
    for _ in range(300):
        labels = (rng.uniform(0, 1, 2000) < probability).astype(int)
        accuracies.append(calibration.realised_accuracy(scores, labels))
        aucs.append(calibration.realised_auc(scores, labels))
    assert calibration.expected_accuracy(scores, probability) == pytest.approx(np.mean(accuracies), abs=0.002)
    assert calibration.expected_auc(scores, probability) == pytest.approx(np.mean(aucs), abs=0.002)


def test_calibrating_miscalibrated_scores_lowers_the_calibration_error_measured_out_of_fold():
    scores, labels = _world(5000)
    fitted = calibration.fit(scores, labels)
    assert fitted.ece_before > 0.1
    assert fitted.ece_after < fitted.ece_before / 3
    assert (fitted.examples, fitted.positives) == (5000, labels.sum())
    assert fitted.label_rate == pytest.approx(labels.mean())
    # On eval, the estimate from out-of-fold calibrated probabilities lands near what was realised.
    reference = fitted.reference
    assert reference.realised_accuracy == pytest.approx(np.mean((scores >= 0.5) == (labels == 1)))
    assert abs(reference.estimated_accuracy - reference.realised_accuracy) < 3 * reference.accuracy_std / np.sqrt(5000)
    assert abs(reference.estimated_auc - reference.realised_auc) < 3 * reference.auc_std / np.sqrt(5000)
    assert len(fitted.replicates) == calibration.REPLICATES


def test_the_auc_standard_error_is_delongs_as_live_metrics_compute_it():
    scores, labels = _world(1500, seed=9)
    assert calibration.auc_standard_error(scores, labels) == pytest.approx(live_metrics.compute(labels, scores).auc_se)


def test_the_file_is_plain_data_that_reads_back_as_written():
    scores, labels = _world(2000)
    attributions = calibration.AttributionReference('explain', {'fare': 'attribution_fare'}, {'fare': 0.3}, 500)
    fitted = calibration.fit(scores, labels, attributions=attributions)
    text = fitted.to_json()
    document = json.loads(text)
    assert document['label_rate'] == pytest.approx(labels.mean())
    assert set(document['breakpoints']) == {'probability', 'calibrated'}
    assert document['attributions']['mean_abs'] == {'fare': 0.3}
    again = calibration.Calibration.from_json(text)
    assert again == fitted
    np.testing.assert_array_equal(again.apply(scores), fitted.apply(scores))
    np.testing.assert_array_equal(again.apply(scores, 3), fitted.apply(scores, 3))
