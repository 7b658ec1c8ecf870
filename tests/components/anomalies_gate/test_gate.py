"""The anomalies gate's plain logic on its own: the lines an anomaly reads as, and the errors."""

from tensorflow_metadata.proto.v0 import anomalies_pb2

import pytest

from components.anomalies_gate import gate

pytestmark = pytest.mark.unit


def _anomalies():
    anomalies = anomalies_pb2.Anomalies()
    fare = anomalies.anomaly_info['fare']
    fare.short_description = 'Out-of-range values'
    fare.reason.add(description='Unexpectedly low values', short_description='low')
    fare.reason.add(short_description='high')
    anomalies.anomaly_info['company'].reason.add(description='New values')
    anomalies.dataset_anomaly_info.reason.add(description='Too few examples')
    return anomalies


def test_one_line_per_feature_in_name_order_then_the_dataset():
    assert gate.describe(_anomalies()) == [
        'company: anomaly (New values)',
        'fare: Out-of-range values (Unexpectedly low values; high)',
        '<dataset>: anomaly (Too few examples)']
    assert gate.describe(anomalies_pb2.Anomalies()) == []


def test_the_errors_say_what_was_found_and_what_to_do():
    anomalies = gate.DataAnomaliesError({'train': ['fare: anomaly (low)']})
    assert anomalies.problems == {'train': ['fare: anomaly (low)']}
    assert "split 'train':\n    - fare: anomaly (low)" in str(anomalies) and 'schema-draft' in str(anomalies)
    drift = gate.DataDriftError('7', ['fare: Jensen-Shannon divergence 0.3 (allowed: <= 0.1)'])
    assert 'serving version 7' in str(drift) and '  - fare: Jensen' in str(drift) and '--drift-policy warn' in str(drift)
    assert set(gate.GATE_ERRORS) == {gate.DataAnomaliesError, gate.DataDriftError}
