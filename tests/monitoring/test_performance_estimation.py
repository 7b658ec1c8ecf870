"""Performance estimated without labels, on worlds whose truth is known by construction: the interval
holds the realised value as often as it says when the calibration holds, under covariate shift too,
and not when the labels moved."""

import numpy as np
import pytest

from foundation import calibration
from monitoring import performance_estimation as estimation

pytestmark = pytest.mark.unit


def truth(scores):
    """The model's scores are too confident: this is the probability of a positive."""
    return 0.05 + 0.9 * scores ** 2


def _eval_split(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    return calibration.fit(scores, (rng.uniform(0, 1, n) < truth(scores)).astype(int))


@pytest.fixture(scope='module')
def fitted():
    return _eval_split()


def _coverage(fitted, draw_scores, probability=truth, windows=60, size=600, seed=1):
    rng = np.random.default_rng(seed)
    inside = {estimation.ACCURACY: 0, estimation.AUC: 0}
    below = dict(inside)
    for w in range(windows):
        scores = draw_scores(rng, size)
        labels = (rng.uniform(0, 1, size) < probability(scores)).astype(int)
        _, comparisons = estimation.side_by_side(scores, labels, fitted, simulations=400, seed=w)
        for c in comparisons:
            inside[c.metric] += bool(c.within)
            below[c.metric] += c.below
    return {m: v / windows for m, v in inside.items()}, {m: v / windows for m, v in below.items()}


def test_the_interval_holds_the_realised_value_about_as_often_as_it_says(fitted):
    inside, _ = _coverage(fitted, lambda rng, n: rng.uniform(0, 1, n))
    for metric, share in inside.items():
        assert share >= 0.88, (metric, share)


def test_under_covariate_shift_the_estimate_follows_the_traffic(fitted):
    # Mostly uncertain examples: accuracy and AUC fall, and the estimate says so without labels.
    def shifted(rng, n):
        return rng.beta(6, 4, n)
    inside, _ = _coverage(fitted, shifted)
    for metric, share in inside.items():
        assert share >= 0.88, (metric, share)
    rng = np.random.default_rng(7)
    clean = estimation.estimate(rng.uniform(0, 1, 2000), fitted)
    moved = estimation.estimate(shifted(rng, 2000), fitted)
    assert moved.auc.value < clean.auc.interval[0] and moved.accuracy.value < clean.accuracy.interval[0]


def test_when_labels_stop_following_the_scores_the_realised_value_falls_below_the_interval(fitted):
    _, below = _coverage(fitted, lambda rng, n: rng.uniform(0, 1, n), probability=lambda s: 0.3 + 0.4 * s)
    assert below[estimation.ACCURACY] > 0.9 and below[estimation.AUC] > 0.9


def test_the_estimate_matches_the_expected_metrics_and_narrows_with_more_examples(fitted):
    rng = np.random.default_rng(11)
    widths = []
    for n in (200, 2000, 20000):
        scores = rng.uniform(0, 1, n)
        found = estimation.estimate(scores, fitted)
        calibrated = fitted.apply(scores)
        assert found.accuracy.value == pytest.approx(calibration.expected_accuracy(scores, calibrated))
        assert found.auc.value == pytest.approx(calibration.expected_auc(scores, calibrated))
        assert found.expected_label_rate == pytest.approx(calibrated.mean())
        assert found.accuracy.sampling_error == pytest.approx(fitted.reference.accuracy_std / np.sqrt(n))
        assert found.auc.reference == fitted.reference.realised_auc
        for metric in found.metrics:
            assert metric.interval[0] <= metric.value <= metric.interval[1]
        widths.append(found.auc.interval[1] - found.auc.interval[0])
    assert widths[0] > widths[1] > widths[2]


def test_a_single_example_has_an_accuracy_estimate_and_no_auc(fitted):
    found = estimation.estimate([0.9], fitted)
    assert found.examples == 1 and 0 < found.accuracy.value < 1
    assert found.auc.value is None and found.auc.interval is None
    with pytest.raises(ValueError):
        estimation.estimate([], fitted)


def test_below_minimum_names_the_metrics_estimated_under_their_minimum(fitted):
    found = estimation.estimate(np.random.default_rng(2).beta(6, 4, 1000), fitted)
    assert [m.metric for m in estimation.below_minimum(found, min_accuracy=found.accuracy.value + 0.01,
                                                       min_auc=found.auc.value - 0.01)] == [estimation.ACCURACY]
    assert estimation.below_minimum(found, 0.0, 0.0) == []
    record = found.record()
    assert record['examples'] == 1000 and len(record['auc']['interval']) == 2


def test_simulations_are_reproducible_and_use_every_bootstrap_refit(fitted):
    scores = np.random.default_rng(4).uniform(0, 1, 300)
    first = estimation.simulated(scores, fitted, simulations=90, seed=3)
    again = estimation.simulated(scores, fitted, simulations=90, seed=3)
    np.testing.assert_array_equal(first[0], again[0])
    assert len(first[0]) == len(first[1]) == 90
    # Fitted on a small eval split, the calibration is uncertain; on a large window, that uncertainty
    # outweighs the labels' chance, and without the refits the interval would hide it.
    small = _eval_split(n=300, seed=5)
    plain = calibration.Calibration(**{**small.__dict__, 'replicates': ()})
    window = np.random.default_rng(6).uniform(0, 1, 20_000)
    wide = estimation.estimate(window, small, simulations=600)
    narrow = estimation.estimate(window, plain, simulations=600)
    for metric in ('accuracy', 'auc'):
        low, high = getattr(wide, metric).interval
        plain_low, plain_high = getattr(narrow, metric).interval
        assert high - low > 2 * (plain_high - plain_low), metric
