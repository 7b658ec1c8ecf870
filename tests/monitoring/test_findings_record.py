"""A feature with several tests is recorded by the one that matters, every test kept beside it."""

import json
import types

import pytest

from components.drift_check.drift import FeatureDrift
from monitoring import metadata_record

pytestmark = pytest.mark.unit


def test_a_breach_of_one_test_is_not_hidden_by_another_tests_value():
    shape = FeatureDrift('fare', 'Jensen-Shannon divergence', 0.30, '0.1', True)
    amount = FeatureDrift('fare', 'Wasserstein / IQR', 0.05, '0.2', False)
    quiet = FeatureDrift('trip_seconds', 'Wasserstein / IQR', 0.01, '0.2', False)
    report = types.SimpleNamespace(skew=[shape, amount, quiet], drift=[amount, shape], prediction_drift=None,
                                   alerts=[])
    found = json.loads(metadata_record._findings(report))
    assert found['skew']['fare'] == [0.3, '0.1'] and found['drift']['fare'] == [0.3, '0.1']
    assert found['skew']['trip_seconds'] == [0.01, '0.2']
    assert found['skew_tests']['fare'] == {'Jensen-Shannon divergence': [0.3, '0.1', True],
                                           'Wasserstein / IQR': [0.05, '0.2', False]}


def test_without_a_breach_the_test_nearest_its_threshold_is_recorded():
    far = FeatureDrift('fare', 'Jensen-Shannon divergence', 0.05, '0.1', False)
    near = FeatureDrift('fare', 'Wasserstein / IQR', 0.19, '0.2', False)
    report = types.SimpleNamespace(skew=[far, near], drift=[], prediction_drift=None, alerts=[])
    assert json.loads(metadata_record._findings(report))['skew']['fare'] == [0.19, '0.2']
