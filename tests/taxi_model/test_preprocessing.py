"""preprocessing_fn through tf.Transform (Beam) on a few rows with known outputs."""

import numpy as np
import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
import tensorflow_data_validation as tfdv

import schemas
from taxi_model import contract, features, preprocessing

pytestmark = pytest.mark.component


BASE_ROW = {
    'fare': 10.0, 'trip_miles': 1.0, 'trip_seconds': 100, 'tips': 0.0,
    'pickup_latitude': 41.9, 'pickup_longitude': -87.6, 'dropoff_latitude': 41.9, 'dropoff_longitude': -87.6,
    'trip_start_hour': 0, 'trip_start_day': 1, 'trip_start_month': 1, 'trip_start_timestamp': 1400000000,
    'pickup_community_area': 8, 'dropoff_community_area': 8, 'pickup_census_tract': None,
    'dropoff_census_tract': None, 'payment_type': 'Cash', 'company': 'A',
}


def _instance(row, feature_spec):
    """A TFT instance dict: fixed-length columns as [value], optional ones as [] or [value]."""
    out = {}
    for name, spec in feature_spec.items():
        value = row[name]
        if isinstance(value, str):
            value = value.encode()
        out[name] = [] if value is None else [value]
    return out


@pytest.fixture(scope='module')
def transformed(tmp_path_factory):
    rows = [
        dict(BASE_ROW, trip_seconds=100, tips=3.0, company='A', trip_start_hour=23, pickup_community_area=99),
        dict(BASE_ROW, trip_seconds=200, tips=1.0, company='A', pickup_latitude=41.7),
        dict(BASE_ROW, trip_seconds=300, tips=2.5, company='B', pickup_latitude=42.0),
        dict(BASE_ROW, trip_seconds=None, tips=0.0, company=None, pickup_latitude=None,
             pickup_community_area=None),
    ]
    schema = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    metadata = tft.DatasetMetadata.from_feature_spec(feature_spec)
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp('tft'))):
        (result, _), _ = (
            [_instance(r, feature_spec) for r in rows], metadata
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
    return result


def column(transformed, name):
    return np.array([np.asarray(row[name]).item() for row in transformed])


def test_scaled_feature_is_z_score_with_mean_imputation(transformed):
    seconds = column(transformed, 'trip_seconds_xf')
    std = np.std([100, 200, 300])
    np.testing.assert_allclose(seconds, [-100 / std, 0, 100 / std, 0.0], rtol=1e-5)


def test_label_is_tip_above_fraction_of_fare(transformed):
    # fare 10: tips 3.0 and 2.5 are above 20%, 1.0 and 0.0 are not.
    assert list(column(transformed, features.LABEL.name)) == [1, 0, 1, 0]


def test_vocabulary_ranks_by_frequency_and_gives_missing_its_own_id(transformed):
    company = column(transformed, 'company_xf')
    assert company[0] == company[1] == 0  # 'A', the most frequent
    assert company[2] != company[3]
    vocab = features.feature('company')
    assert all(0 <= c < vocab.num_categories for c in company)


def test_identity_ids_are_clipped_and_missing_maps_to_zero(transformed):
    area = column(transformed, 'pickup_community_area_xf')
    assert list(area) == [77, 8, 8, 0]
    assert column(transformed, 'trip_start_hour_xf')[0] == 23


def test_bucketized_missing_value_gets_the_middle_bucket(transformed):
    buckets = column(transformed, 'pickup_latitude_xf')
    f = features.feature('pickup_latitude')
    assert buckets[3] == f.buckets // 2
    assert buckets[1] < buckets[2]  # 41.7 is south of 42.0
    assert all(0 <= b < f.buckets for b in buckets)


def test_every_feature_has_one_output_besides_label_and_outlier_score(transformed):
    expected = {f.transformed_name for f in features.FEATURES} | {features.LABEL.name}
    assert set(transformed[0]) == expected | {contract.OUTLIER_SCORE, contract.OUTLIER_THRESHOLD}


def test_outlier_score_is_the_mean_squared_z_score_and_its_threshold_a_training_quantile(transformed):
    scores = column(transformed, contract.OUTLIER_SCORE)
    # Every row has the same fare and miles (z 0): the score comes from trip_seconds
    # and the latitudes, the features that vary.
    numeric = [f for f in features.FEATURES if f.raw_type is not features.RawType.BYTES
               and f.encoding is not features.Encoding.IDENTITY]
    seconds = column(transformed, 'trip_seconds_xf')
    latitude = np.array([41.9, 41.7, 42.0, np.nan])
    present = latitude[~np.isnan(latitude)]
    latitude_z = np.nan_to_num((latitude - present.mean()) / present.std())
    np.testing.assert_allclose(scores, (seconds ** 2 + latitude_z ** 2) / len(numeric), rtol=1e-4)
    threshold = column(transformed, contract.OUTLIER_THRESHOLD)
    assert len(set(threshold)) == 1 and scores.min() <= threshold[0] <= scores.max()
