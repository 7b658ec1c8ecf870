"""The drift comparison on its own: TFDV statistics of generated spans, the
curated schema's comparators, and what the check records in ML Metadata."""

import json
import random

import pytest
import tensorflow_data_validation as tfdv
from ml_metadata.proto import metadata_store_pb2

import schemas
from components.drift_check import drift
from pipeline import data

pytestmark = pytest.mark.component


@pytest.fixture(scope='module')
def statistics(tmp_path_factory):
    """TFDV statistics of the sample's first 3,000 rows, a resample of them, a drifted
    resample, and a span a quarter the size."""
    root = tmp_path_factory.mktemp('spans')
    spans = {'baseline': dict(rows=3000), 'clean': dict(rows=3000, seed=7),
             'drifted': dict(rows=3000, seed=9, drift=True), 'small': dict(rows=750, seed=3)}
    return {name: tfdv.generate_statistics_from_csv(data.prepare_sample(str(root / name), **kwargs))
            for name, kwargs in spans.items()}


@pytest.fixture(scope='module')
def schema():
    return tfdv.load_schema_text(schemas.CURATED_SCHEMA)


def test_a_resampled_span_does_not_drift(statistics, schema):
    result, anomalies = drift.compare(statistics['clean'], statistics['baseline'], schema, '7')
    assert result.verdict == drift.NO_DRIFT, drift.describe(result)
    # Every comparator of the schema was measured, and the count compared.
    compared = {f.name for f in schema.feature if f.HasField('drift_comparator')}
    assert {f.feature for f in result.features} == compared | {drift.EXAMPLE_COUNT}
    assert not anomalies.anomaly_info


def test_a_drifted_span_names_the_features_that_moved(statistics, schema):
    result, anomalies = drift.compare(statistics['drifted'], statistics['baseline'], schema, '7')
    assert result.verdict == drift.DRIFT
    # Fares x3, trips at night, cards to cash; distances and miles did not move.
    assert set(result.drifted) == {'fare', 'trip_start_hour', 'payment_type'}
    assert set(anomalies.anomaly_info) == {'fare', 'trip_start_hour', 'payment_type'}
    lines = drift.describe(result)
    # A line per test that fired: fares x3 moved in shape and in location/scale.
    assert {line.split(':')[0] for line in lines} == {'fare', 'trip_start_hour', 'payment_type'}
    assert any(line.startswith('fare: Jensen-Shannon divergence') for line in lines)
    assert any(line.startswith(f'fare: {drift.LOCATION_SCALE}') for line in lines)


def test_a_span_with_a_quarter_of_the_examples_is_count_drift(statistics, schema):
    result, _ = drift.compare(statistics['small'], statistics['baseline'], schema, '7')
    count = next(f for f in result.features if f.feature == drift.EXAMPLE_COUNT)
    assert count.drifted and count.value == pytest.approx(0.25)
    assert drift.EXAMPLE_COUNT in result.drifted


def test_the_recorded_result_reads_back_from_ml_metadata_properties(statistics, schema):
    result, _ = drift.compare(statistics['drifted'], statistics['baseline'], schema, '42')
    artifact = metadata_store_pb2.Artifact()
    artifact.custom_properties[drift.VERDICT].string_value = result.verdict
    artifact.custom_properties[drift.BASELINE_VERSION].string_value = '42'
    artifact.custom_properties[drift.DISTANCES].string_value = json.dumps(
        [f.__dict__ for f in result.features])
    assert drift.read_result(artifact) == result
    assert drift.read_result(metadata_store_pb2.Artifact()) is None


def test_a_longer_tail_alone_is_not_drift(tmp_path, taxi_rows, schema):
    """A resample whose longest trips are ten times longer: TFDV's own numeric divergence
    rebuckets equal-width histograms and reads the new maximum as drift; counted in the
    baseline's quantile buckets, the miles have not moved."""
    header, rows = taxi_rows
    at = header.index('trip_miles')
    stretched = [list(r) for r in rows[:3000]]
    for row in stretched[:5]:
        row[at] = '5000'
    baseline = tfdv.generate_statistics_from_csv(data.write_span(str(tmp_path / 'a'), 1, header, rows[:3000]))
    current = tfdv.generate_statistics_from_csv(data.write_span(str(tmp_path / 'b'), 1, header, stretched))
    result, anomalies = drift.compare(current, baseline, schema, '7')
    miles = next(f for f in result.features if f.feature == 'trip_miles')
    assert miles.value < 0.01 and not miles.drifted and 'trip_miles' not in anomalies.anomaly_info


# -- location and scale from statistics alone -----------------------------------------------------------

@pytest.fixture(scope='module')
def scaled(tmp_path_factory, taxi_rows):
    """Statistics of the clean resample with one measurement at a time x1.6 (a units change upstream)."""
    header, rows = taxi_rows
    clean = random.Random(7).choices(rows[:3000], k=3000)
    root = tmp_path_factory.mktemp('scaled')
    found = {}
    for name in UNITS_CAUGHT:
        at = header.index(name)
        moved = [row[:at] + [str(float(row[at]) * 1.6) if row[at] else ''] + row[at + 1:] for row in clean]
        found[name] = tfdv.generate_statistics_from_csv(data.write_span(str(root / name), 1, header, moved))
    return found


# Numeric features whose x1.6 change the statistics of two 3,000-row spans prove (deciles alone): amounts by
# location/scale, positions by shape (rescaled, they leave the city). trip_miles' they do not
# (docs/decisions.md#numeric-drift-location-scale-and-shape); the monitor, with raw values, does.
UNITS_CAUGHT = {'fare': drift.LOCATION_SCALE, 'trip_seconds': drift.LOCATION_SCALE,
                'pickup_latitude': 'Jensen-Shannon divergence', 'pickup_longitude': 'Jensen-Shannon divergence',
                'dropoff_latitude': 'Jensen-Shannon divergence', 'dropoff_longitude': 'Jensen-Shannon divergence'}


def test_a_units_change_on_a_numeric_feature_is_drift(statistics, scaled, schema):
    for name, measure in UNITS_CAUGHT.items():
        result, anomalies = drift.compare(scaled[name], statistics['baseline'], schema, '7')
        fired = {(f.feature, f.measure) for f in result.features if f.drifted}
        assert (name, measure) in fired, (name, drift.describe(result))
        assert result.drifted == [name] and name in anomalies.anomaly_info, drift.describe(result)


def test_a_resample_is_not_drift_in_location_and_scale(statistics, schema):
    """Amounts tie (a quarter of trips are 0 miles, fares come in 5-cent steps): a decile edge of one span can
    fall inside a bucket of the other whose values all sit at one end, which interpolating inside the bucket
    would read as a distance. The distance the statistics prove stays far below the threshold."""
    result, _ = drift.compare(statistics['clean'], statistics['baseline'], schema, '7')
    location = {f.feature: f for f in result.features if f.measure == drift.LOCATION_SCALE}
    assert set(location) == {'fare', 'trip_miles', 'trip_seconds'}
    assert all(not f.drifted and f.value < float(f.threshold) / 2 for f in location.values()), location
