import pytest

from pipeline import features
from pipeline.features import Encoding, Feature, RawType


def test_every_feature_has_a_unique_name_and_transformed_name():
    names = [f.name for f in features.FEATURES]
    assert len(names) == len(set(names))
    assert all(f.transformed_name == f'{f.name}_xf' for f in features.FEATURES)


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


def test_serving_columns_exclude_the_label_source():
    assert features.LABEL.tips_column in features.raw_columns()
    assert features.LABEL.tips_column not in features.serving_columns()
    assert set(features.serving_columns()) <= set(features.raw_columns())


def test_slices_are_raw_columns():
    assert set(features.SLICE_COLUMNS) <= set(features.raw_columns())
