"""The curated schema agrees with the feature records and accepts the sample data."""

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from pipeline import features
from pipeline.features import RawType

from conftest import write_csv

SCHEMA_TYPES = {RawType.FLOAT: schema_pb2.FLOAT, RawType.INT: schema_pb2.INT, RawType.BYTES: schema_pb2.BYTES}


@pytest.fixture(scope='module')
def schema():
    return tfdv.load_schema_text(schemas.CURATED_SCHEMA)


def test_schema_has_every_column_with_its_declared_type(schema):
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(features.raw_columns())
    for name, raw_type in features.raw_columns().items():
        assert by_name[name].type == SCHEMA_TYPES[raw_type], name


def test_label_source_is_absent_only_at_serving(schema):
    assert set(schema.default_environment) == {'TRAINING', 'SERVING'}
    tips = tfdv.get_feature(schema, features.LABEL.tips_column)
    assert list(tips.not_in_environment) == ['SERVING']
    for name in features.serving_columns():
        assert not tfdv.get_feature(schema, name).not_in_environment, name


def test_optional_integer_columns_have_non_negative_domains(schema):
    # serving_raw reads a negative integer as "missing"; that is only sound
    # while no valid value is negative.
    for f in schema.feature:
        if f.type == schema_pb2.INT and not f.HasField('shape') and f.name in features.serving_columns():
            assert f.HasField('int_domain') and f.int_domain.min >= 0, f.name


def test_drift_and_skew_comparators_are_declared(schema):
    payment = tfdv.get_feature(schema, 'payment_type')
    assert payment.skew_comparator.infinity_norm.threshold > 0
    assert payment.drift_comparator.infinity_norm.threshold > 0
    assert tfdv.get_feature(schema, 'fare').drift_comparator.jensen_shannon_divergence.threshold > 0


def _anomalies(tmp_path, header, rows, schema):
    path = write_csv(str(tmp_path / 'data.csv'), header, rows)
    stats = tfdv.generate_statistics_from_csv(path)
    return tfdv.validate_statistics(stats, schema)


def test_sample_data_has_no_anomalies(tmp_path, taxi_rows, schema):
    header, rows = taxi_rows
    assert not _anomalies(tmp_path, header, rows[:2000], schema).anomaly_info


def test_out_of_domain_values_are_anomalies(tmp_path, taxi_rows, schema):
    header, rows = taxi_rows
    payment, hour = header.index('payment_type'), header.index('trip_start_hour')
    bad = [list(r) for r in rows[:500]]
    for r in bad[:50]:
        r[payment] = 'Bitcoin'
        r[hour] = '25'
    anomalies = _anomalies(tmp_path, header, bad, schema).anomaly_info
    assert {'payment_type', 'trip_start_hour'} <= set(anomalies)
