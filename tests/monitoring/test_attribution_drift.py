"""Attribution drift compares what the model leans on in served traffic with what it leaned on in
training, feature by feature, without mistaking a negligible feature's noise for a change."""

import numpy as np
import pytest

from foundation.calibration import AttributionReference
from monitoring import attribution_drift

pytestmark = pytest.mark.unit

REFERENCE = AttributionReference(
    'explain', {name: f'attribution_{name}' for name in ('payment_type', 'fare', 'trip_miles')},
    {'payment_type': 5.0, 'fare': 0.3, 'trip_miles': 0.01}, 500)


def _attributions(rng, n, scale=None):
    scale = {**REFERENCE.mean_abs, **(scale or {})}
    # |N(0, s * sqrt(pi/2))| has mean s.
    return {name: rng.normal(0, s * np.sqrt(np.pi / 2), n) for name, s in scale.items()}


def test_traffic_explained_as_in_training_has_not_drifted():
    rng = np.random.default_rng(0)
    found = attribution_drift.measure('batch', 500, lambda batch: _attributions(rng, 500), REFERENCE)
    assert found.drifted == []
    assert {f.feature for f in found.features} == set(REFERENCE.mean_abs)
    assert found.examples == 500


def test_a_feature_the_model_leans_on_more_has_drifted_and_only_it():
    rng = np.random.default_rng(1)
    found = attribution_drift.measure('batch', 500, lambda batch: _attributions(rng, 500, {'fare': 0.9}), REFERENCE)
    assert [f.feature for f in found.drifted] == ['fare']
    fare = next(f for f in found.features if f.feature == 'fare')
    assert fare.change == pytest.approx(abs(fare.served - 0.3) / 0.3)
    assert found.record()['changes']['fare'] == round(fare.change, 4)


def test_a_negligible_feature_is_judged_against_the_floor_not_its_own_tiny_mean():
    # trip_miles five times its reference: 0.04 more log-odds, against a total of about 5.3.
    found = attribution_drift.compare({'payment_type': 5.0, 'fare': 0.3, 'trip_miles': 0.05}, 500, REFERENCE)
    assert found.drifted == []
    total = sum(REFERENCE.mean_abs.values())
    miles = next(f for f in found.features if f.feature == 'trip_miles')
    assert miles.change == pytest.approx(0.04 / (attribution_drift.FLOOR * total))


def test_the_batch_is_explained_once_and_small_samples_are_not_judged():
    calls = []

    def explain(batch):
        calls.append(batch)
        return _attributions(np.random.default_rng(2), 300)
    assert attribution_drift.measure('rows', 300, explain, REFERENCE) is not None
    assert calls == ['rows']
    assert attribution_drift.measure('rows', attribution_drift.MIN_SAMPLE - 1, explain, REFERENCE) is None
    assert len(calls) == 1


def test_the_sample_is_deterministic_sorted_and_without_repeats():
    first = attribution_drift.sample_indexes(10_000, 500, seed=3)
    assert len(set(first)) == 500 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, attribution_drift.sample_indexes(10_000, 500, seed=3))
    np.testing.assert_array_equal(attribution_drift.sample_indexes(40, 500), np.arange(40))
