"""Raw feature rows for the model's two serving signatures.

A row is a dict of raw column values, as a CSV reader or a JSON client has
them. `to_raw_instance` gives what the `serving_raw` signature (and a TF
Serving REST `instances` entry) takes; `to_tf_example` gives what
`serving_default` takes. Both mark missing values the same way.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Union

import tensorflow as tf

from pipeline.features import FEATURES, RawType, raw_columns

Value = Union[float, int, str, None]
# What `serving_raw` reads as "missing" in an optional column (see pipeline.model).
MISSING = {RawType.FLOAT: float('nan'), RawType.INT: -1, RawType.BYTES: ''}


def _typed(raw_type: RawType, value: Value) -> Optional[Union[float, int, str]]:
    """The value in the column's type, or None when missing. Raises on bad text."""
    if value is None or (isinstance(value, str) and value.strip() == ''):
        return None
    if raw_type is RawType.FLOAT:
        number = float(value)
        return None if math.isnan(number) else number
    if raw_type is RawType.INT:
        return int(float(value)) if isinstance(value, str) else int(value)
    return str(value)


def to_raw_instance(row: Mapping[str, Value]) -> Dict[str, Union[float, int, str]]:
    """The model's features from `row`, with missing values as `MISSING` markers."""
    instance = {}
    for f in FEATURES:
        try:
            value = _typed(f.raw_type, row.get(f.name))
        except ValueError:
            raise ValueError(f'{f.name}: {row.get(f.name)!r} is not a {f.raw_type.value} value') from None
        instance[f.name] = MISSING[f.raw_type] if value is None else value
    return instance


def to_tf_example(row: Mapping[str, Value]) -> tf.train.Example:
    """A tf.Example of the known columns in `row`; a missing value is left out."""
    example = tf.train.Example()
    for name, raw_type in raw_columns().items():
        value = _typed(raw_type, row.get(name))
        if value is None:
            continue
        feature = example.features.feature[name]
        if raw_type is RawType.FLOAT:
            feature.float_list.value.append(value)
        elif raw_type is RawType.INT:
            feature.int64_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode())
    return example


def raw_batch(rows) -> Dict[str, tf.Tensor]:
    """Tensors for the `serving_raw` signature from a list of rows."""
    instances = [to_raw_instance(row) for row in rows]
    return {f.name: tf.constant([i[f.name] for i in instances], dtype=f.raw_type.tf_dtype) for f in FEATURES}
