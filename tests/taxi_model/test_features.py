import pytest

from taxi_model import features
from taxi_model.features import Encoding, Feature, RawType

pytestmark = pytest.mark.unit


def test_every_feature_has_a_unique_name_and_transformed_name():
    names = [f.name for f in features.FEATURES]
    transformed = [f.transformed_name for f in features.FEATURES]
    assert len(names) == len(set(names))
    assert len(transformed) == len(set(transformed))
    # A transformed column must never be mistaken for a raw one (or the label).
    assert not set(transformed) & (set(features.raw_columns()) | {features.LABEL.name})


def test_categorical_id_space_follows_encoding():
    assert Feature('x', RawType.FLOAT, Encoding.BUCKETIZED, buckets=7).num_categories == 7
    assert Feature('x', RawType.INT, Encoding.IDENTITY, cardinality=24).num_categories == 24
    assert Feature('x', RawType.BYTES, Encoding.VOCABULARY, vocab_size=10, oov_buckets=3).num_categories == 13
    with pytest.raises(ValueError):
        Feature('x', RawType.FLOAT, Encoding.SCALED).num_categories


@pytest.mark.parametrize('kwargs', [
    dict(encoding=Encoding.BUCKETIZED),
    dict(encoding=Encoding.IDENTITY, cardinality=0),
    dict(encoding=Encoding.VOCABULARY, vocab_size=10),
])
def test_incomplete_records_are_rejected(kwargs):
    with pytest.raises(ValueError, match='needs'):
        Feature('x', RawType.BYTES, **kwargs)


def test_vocabulary_needs_a_string_column():
    with pytest.raises(ValueError, match='BYTES'):
        Feature('x', RawType.INT, Encoding.VOCABULARY, vocab_size=5, oov_buckets=1)


def test_slices_are_raw_columns():
    assert set(features.SLICE_COLUMNS) <= set(features.raw_columns())


def test_steps_are_for_scaled_features_only():
    assert Feature('x', RawType.FLOAT, Encoding.SCALED, steps=10).steps == 10
    for kwargs in (dict(encoding=Encoding.BUCKETIZED, buckets=5, steps=10), dict(encoding=Encoding.SCALED, steps=-1)):
        with pytest.raises(ValueError, match='steps'):
            Feature('x', RawType.FLOAT, **kwargs)
    # Card tips are round dollars: fare is the feature whose label flips at set values (docs/pipeline.md#card-trips).
    assert [f.name for f in features.FEATURES if f.steps] == ['fare']
