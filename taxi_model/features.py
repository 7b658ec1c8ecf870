"""The Chicago Taxi features, declared once.

Every consumer derives what it needs from the records below: the schema
check (`tests/taxi_model/test_schema.py` holds the curated schema to them), Transform
(`taxi_model.preprocessing`), the Keras model inputs (`taxi_model.model`), the
TFMA slices and label (`pipeline.dag`) and the serving signatures.
Adding a feature is one line here; nothing else keeps a parallel list.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Tuple


class RawType(enum.Enum):
    """The type of a column in the CSV and in the schema."""

    FLOAT = 'FLOAT'
    INT = 'INT'
    BYTES = 'BYTES'

    @property
    def tf_dtype(self) -> str:
        """The TensorFlow dtype name a parsed value of this column has."""
        return {'FLOAT': 'float32', 'INT': 'int64', 'BYTES': 'string'}[self.value]


class Encoding(enum.Enum):
    """How Transform turns the raw column into a model input."""

    # z-score of the value; missing values are imputed with the mean.
    SCALED = 'scaled'
    # Quantile bucket id (0..buckets-1); missing values fall in bucket 0's range.
    BUCKETIZED = 'bucketized'
    # The integer value itself is the category id (0..cardinality-1).
    IDENTITY = 'identity'
    # Vocabulary id, with hashed out-of-vocabulary buckets after the vocabulary.
    VOCABULARY = 'vocabulary'


@dataclasses.dataclass(frozen=True)
class Feature:
    """One raw column that the model uses, and everything derived from it."""

    name: str
    raw_type: RawType
    encoding: Encoding
    # BUCKETIZED: number of quantile buckets.
    buckets: int = 0
    # IDENTITY: ids are 0..cardinality-1; larger values map to the last id.
    cardinality: int = 0
    # VOCABULARY: size of the vocabulary kept and of the OOV hash space.
    vocab_size: int = 0
    oov_buckets: int = 0
    # SCALED, optionally: the model also sees the z-score one-hot in this many fixed bins (its wide part), so
    # it can learn a step at a value, not only a smooth function (taxi_model.model.step_boundaries).
    steps: int = 0

    def __post_init__(self):
        needed = {
            Encoding.SCALED: (),
            Encoding.BUCKETIZED: ('buckets',),
            Encoding.IDENTITY: ('cardinality',),
            Encoding.VOCABULARY: ('vocab_size', 'oov_buckets'),
        }[self.encoding]
        for field in needed:
            if getattr(self, field) <= 0:
                raise ValueError(f'{self.name}: {self.encoding.value} needs {field} > 0')
        if self.encoding is Encoding.VOCABULARY and self.raw_type is not RawType.BYTES:
            raise ValueError(f'{self.name}: vocabulary encoding needs a BYTES column')
        if self.steps < 0 or (self.steps and self.encoding is not Encoding.SCALED):
            raise ValueError(f'{self.name}: steps (fixed z-score bins) are for a scaled feature, and not negative')

    @property
    def transformed_name(self) -> str:
        return f'{self.name}_xf'

    @property
    def is_categorical(self) -> bool:
        return self.encoding is not Encoding.SCALED

    @property
    def num_categories(self) -> int:
        """Size of the id space a categorical model input draws from."""
        if self.encoding is Encoding.BUCKETIZED:
            return self.buckets
        if self.encoding is Encoding.IDENTITY:
            return self.cardinality
        if self.encoding is Encoding.VOCABULARY:
            return self.vocab_size + self.oov_buckets
        raise ValueError(f'{self.name} is not categorical')


@dataclasses.dataclass(frozen=True)
class Label:
    """The label is derived: a trip is a 'big tipper' when tips > fraction * fare."""

    name: str = 'big_tipper'
    tips_column: str = 'tips'
    fare_column: str = 'fare'
    tip_fraction: float = 0.2


FEATURES: Tuple[Feature, ...] = (
    Feature('trip_miles', RawType.FLOAT, Encoding.SCALED),
    # Card tips are mostly round dollars ($2 the commonest), so whether a tip is over 20% flips at fares of $5,
    # $10, $15: fixed bins of about $0.60 let the model learn those steps (docs/pipeline.md#card-trips).
    Feature('fare', RawType.FLOAT, Encoding.SCALED, steps=120),
    Feature('trip_seconds', RawType.INT, Encoding.SCALED),
    Feature('pickup_latitude', RawType.FLOAT, Encoding.BUCKETIZED, buckets=10),
    Feature('pickup_longitude', RawType.FLOAT, Encoding.BUCKETIZED, buckets=10),
    Feature('dropoff_latitude', RawType.FLOAT, Encoding.BUCKETIZED, buckets=10),
    Feature('dropoff_longitude', RawType.FLOAT, Encoding.BUCKETIZED, buckets=10),
    Feature('trip_start_hour', RawType.INT, Encoding.IDENTITY, cardinality=24),
    Feature('trip_start_day', RawType.INT, Encoding.IDENTITY, cardinality=8),
    Feature('trip_start_month', RawType.INT, Encoding.IDENTITY, cardinality=13),
    Feature('pickup_community_area', RawType.INT, Encoding.IDENTITY, cardinality=78),
    Feature('dropoff_community_area', RawType.INT, Encoding.IDENTITY, cardinality=78),
    Feature('payment_type', RawType.BYTES, Encoding.VOCABULARY, vocab_size=10, oov_buckets=2),
    Feature('company', RawType.BYTES, Encoding.VOCABULARY, vocab_size=100, oov_buckets=10),
)

LABEL = Label()

# Columns present in the data that the model deliberately ignores. They stay in
# the curated schema so that their disappearance or type change is still seen.
IGNORED_COLUMNS: Dict[str, RawType] = {
    'trip_start_timestamp': RawType.INT,
    'pickup_census_tract': RawType.INT,
    'dropoff_census_tract': RawType.INT,
}

# TFMA slices: every metric is also reported per value of these raw features.
SLICE_COLUMNS: Tuple[str, ...] = ('trip_start_hour', 'payment_type')
# Slices the Evaluator gates on besides overall (components/slice_gates.py): every value of these columns with
# enough eval examples of each class must meet the slice gates. payment_type: the overall AUC is mostly "is it
# cash" (cash trips record no tips), so card trips are where the model must predict a tip at all.
GATED_SLICE_COLUMNS: Tuple[str, ...] = ('payment_type',)
if not set(GATED_SLICE_COLUMNS) <= set(SLICE_COLUMNS):
    raise ValueError(f'gated slice columns {sorted(set(GATED_SLICE_COLUMNS) - set(SLICE_COLUMNS))} are not '
                     'among SLICE_COLUMNS, which TFMA slices on')


def feature(name: str) -> Feature:
    for f in FEATURES:
        if f.name == name:
            return f
    raise KeyError(name)


def raw_columns() -> Dict[str, RawType]:
    """Every column the data must have, with its type (label sources included)."""
    columns = {f.name: f.raw_type for f in FEATURES}
    columns.update(IGNORED_COLUMNS)
    columns[LABEL.tips_column] = RawType.FLOAT
    columns.setdefault(LABEL.fare_column, RawType.FLOAT)
    return columns
