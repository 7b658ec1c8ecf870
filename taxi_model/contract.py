"""The serving contract of the exported taxi model: the one place that says it.

What a client sends and gets back: the signature names, their input and
output keys, how a raw request marks a missing value, and how a row of raw
column values (as a CSV reader or an application has it) becomes a request.
The export (`taxi_model.export`), its warm-up records, the CLI's clients and
the tests all take these from here. The model server takes none of it: it
learns each model from the SavedModel's own signatures.

TF Serving's own names (the default signature, the Classify/Regress method
names and keys) are TensorFlow's constants, not restated.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from foundation import model_files
from taxi_model.features import FEATURES, LABEL, RawType, raw_columns

# -- signatures ----------------------------------------------------------------

# Serialized tf.Example in, probabilities out: the TFX and TFMA standard.
PREDICT_EXAMPLES = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# One tensor per raw feature: plain JSON for TF Serving's REST API.
PREDICT_RAW = 'serving_raw'
# TF Serving's Classify and Regress APIs, over serialized tf.Examples.
CLASSIFY = 'classification'
REGRESS = 'regression'
# Raw features in (as `serving_raw`), the prediction with one attribution per raw
# feature out (integrated gradients against a stated baseline).
EXPLAIN = 'explain'
# Raw tf.Example (with the label's source columns) to transformed features and
# label: what TFMA's preprocessing step calls. Not for clients.
TRANSFORM_FEATURES = 'transform_features'

# The signatures a client may call, and TF Serving's method name for each.
CLIENT_SIGNATURES: Dict[str, str] = {
    PREDICT_EXAMPLES: tf.saved_model.PREDICT_METHOD_NAME,
    PREDICT_RAW: tf.saved_model.PREDICT_METHOD_NAME,
    EXPLAIN: tf.saved_model.PREDICT_METHOD_NAME,
    CLASSIFY: tf.saved_model.CLASSIFY_METHOD_NAME,
    REGRESS: tf.saved_model.REGRESS_METHOD_NAME,
}

# -- inputs and outputs ----------------------------------------------------------

# The serialized tf.Example input of the predict signatures.
EXAMPLES_INPUT = 'examples'
# Classify and Regress take one string input of this name (TF Serving's contract).
EXAMPLES_API_INPUT = tf.saved_model.CLASSIFY_INPUTS
# The probability that the trip's tip exceeds the threshold, shape [batch, 1].
PROBABILITIES = 'probabilities'
# Classify's class labels, in score order: not a big tipper, a big tipper.
CLASS_LABELS = ('0', '1')

# Outlier flags, outputs of every predict signature and of `explain`, shape [batch]:
# - how unlike the training split the example is (mean squared z-score of its
#   numeric features, statistics from Transform's analysis of the training split);
OUTLIER_SCORE = 'outlier_score'
# - the score above which an example is unusual: calibrated to flag
#   `taxi_model.preprocessing.OUTLIER_SHARE` of the training split;
OUTLIER_THRESHOLD = 'outlier_threshold'
# - the raw features outside the curated schema's domain or unseen in the
#   vocabulary, comma-separated ('' when none);
FLAGGED_FEATURES = 'flagged_features'
# - true when the score exceeds the threshold or any feature is flagged.
IS_OUTLIER = 'is_outlier'
FLAG_OUTPUTS = (IS_OUTLIER, OUTLIER_SCORE, FLAGGED_FEATURES)

# `explain` outputs, shape [batch]: the prediction for the baseline input, the
# log-odds of both, and per raw feature its share of (log-odds - baseline log-odds).
# Attributions are in log-odds, where the model's wide part adds up exactly; in
# probability the sigmoid's saturation would credit one feature's change to another.
BASELINE_PROBABILITY = 'baseline_probability'
LOG_ODDS = 'log_odds'
BASELINE_LOG_ODDS = 'baseline_log_odds'
ATTRIBUTION_PREFIX = 'attribution_'
# Written into every exported model: how attributions are computed and the baseline.
EXPLANATION_FILE = model_files.EXPLANATION_FILE


def attribution_key(feature_name: str) -> str:
    return f'{ATTRIBUTION_PREFIX}{feature_name}'

# -- missing values in a raw request ----------------------------------------------

# What `serving_raw` reads as "missing" in an optional column. Integers use a
# negative number, which is sound while every integer domain of the curated
# schema is non-negative (tests/taxi_model/test_features.py holds it to that).
MISSING: Dict[RawType, Union[float, int, str]] = {RawType.FLOAT: float('nan'), RawType.INT: -1, RawType.BYTES: ''}
# The same rule, spelled for readers of the exported model that cannot import
# this module (the model server's request log): per input, "nan", "negative" or "empty".
_MISSING_RULE = {RawType.FLOAT: 'nan', RawType.INT: 'negative', RawType.BYTES: 'empty'}
# Written into every exported model's assets.extra/ next to TF Serving's warm-up file.
MISSING_VALUES_FILE = model_files.MISSING_VALUES_FILE


def missing_values_json() -> str:
    """The missing-value markers of every signature with raw inputs, as JSON."""
    rules = {f.name: _MISSING_RULE[f.raw_type] for f in FEATURES}
    return json.dumps({PREDICT_RAW: rules, EXPLAIN: rules}, indent=2, sort_keys=True)


# -- rows to requests ---------------------------------------------------------------

Value = Union[float, int, str, None]


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
        try:
            value = _typed(raw_type, row.get(name))
        except ValueError:
            raise ValueError(f'{name}: {row.get(name)!r} is not a {raw_type.value} value') from None
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


def from_tf_example(example: tf.train.Example) -> Dict[str, Value]:
    """The row a tf.Example holds (the inverse of `to_tf_example`): None where a column is absent."""
    row: Dict[str, Value] = {}
    for name, raw_type in raw_columns().items():
        feature = example.features.feature.get(name)
        values = [] if feature is None else getattr(feature, feature.WhichOneof('kind') or 'int64_list').value
        if not values:
            row[name] = None
        elif raw_type is RawType.BYTES:
            row[name] = values[0].decode()
        else:
            row[name] = values[0]
    return row


def raw_inputs(rows: Sequence[Mapping[str, Value]]) -> Dict[str, np.ndarray]:
    """The `serving_raw` signature's inputs for `rows`, one array per feature."""
    instances = [to_raw_instance(row) for row in rows]
    return {f.name: np.array([i[f.name] for i in instances], dtype=_NUMPY_DTYPES[f.raw_type]) for f in FEATURES}


def example_inputs(rows: Sequence[Mapping[str, Value]]) -> Dict[str, np.ndarray]:
    """The `serving_default` signature's input for `rows`: serialized tf.Examples."""
    return {EXAMPLES_INPUT: np.array([to_tf_example(row).SerializeToString() for row in rows], dtype=object)}


def inputs_for(signature: str, rows: Sequence[Mapping[str, Value]]) -> Dict[str, np.ndarray]:
    """The inputs of a predict signature (`serving_raw`, `serving_default` or `explain`) for `rows`."""
    if signature in (PREDICT_RAW, EXPLAIN):
        return raw_inputs(rows)
    if signature == PREDICT_EXAMPLES:
        return example_inputs(rows)
    raise ValueError(f'signature must be {PREDICT_RAW}, {PREDICT_EXAMPLES} or {EXPLAIN}, not {signature!r}')


# -- feedback ------------------------------------------------------------------

# Ground truth comes back (serving/feedback.py) as the label itself or as the
# tips paid, from which the label is derived with the fare the request carried.
FEEDBACK_LABEL = 'label'
# What feedback may carry for this model.
FEEDBACK_VALUES = (FEEDBACK_LABEL, LABEL.tips_column)
# Logged request features the derivation reads.
FEEDBACK_FEATURES = (LABEL.fare_column,)


def labels_from_feedback(observed: Mapping[str, np.ndarray], logged: Mapping[str, np.ndarray]) -> np.ndarray:
    """0/1 per example, NaN where it cannot be known (no label sent; tips sent but no fare in the request).

    Arrays are aligned per example; an observed value not sent for an example is NaN. Unlike
    the training transform, which calls a trip without a fare "no big tip", an unknown fare
    gives no label here: live metrics judge only examples whose truth is known.
    """
    size = len(next(iter(logged.values()))) if logged else len(next(iter(observed.values())))
    labels = np.full(size, np.nan)
    tips = observed.get(LABEL.tips_column)
    if tips is not None:
        # In float32, as the training transform computes it, so a tip of exactly a fifth
        # of the fare gets the label training gave it.
        tips, fare = tips.astype(np.float32), logged[LABEL.fare_column].astype(np.float32)
        known = np.isfinite(tips) & np.isfinite(fare)
        labels[known] = (tips[known] > np.float32(LABEL.tip_fraction) * fare[known]).astype(float)
    sent = observed.get(FEEDBACK_LABEL)
    if sent is not None:
        given = np.isfinite(sent)
        labels[given] = (sent[given] >= 0.5).astype(float)  # the label wins over tips when both came
    return labels


def probabilities(outputs: Mapping[str, np.ndarray]) -> List[float]:
    """One tip probability per row from a predict signature's outputs."""
    return np.reshape(outputs[PROBABILITIES], [-1]).astype(float).tolist()


@dataclasses.dataclass(frozen=True)
class Flags:
    """One row's outlier flags; all empty for a model exported before they existed."""

    is_outlier: Optional[bool] = None
    score: Optional[float] = None
    features: Tuple[str, ...] = ()


def flags(outputs: Mapping[str, np.ndarray]) -> List[Flags]:
    """Per row, the outlier flags in a predict or explain signature's outputs."""
    size = len(outputs[PROBABILITIES])
    if IS_OUTLIER not in outputs:
        return [Flags()] * size
    names = [_text(v) for v in np.reshape(outputs[FLAGGED_FEATURES], [-1])]
    return [Flags(bool(flag), float(score), tuple(n for n in name.split(',') if n))
            for flag, score, name in zip(np.reshape(outputs[IS_OUTLIER], [-1]),
                                         np.reshape(outputs[OUTLIER_SCORE], [-1]), names)]


def attributions(outputs: Mapping[str, np.ndarray]) -> List[Dict[str, float]]:
    """Per row, each raw feature's attribution from the `explain` signature's outputs."""
    columns = {f.name: np.reshape(outputs[attribution_key(f.name)], [-1]).astype(float) for f in FEATURES}
    return [{name: float(column[i]) for name, column in columns.items()} for i in range(len(outputs[PROBABILITIES]))]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_NUMPY_DTYPES = {RawType.FLOAT: np.float32, RawType.INT: np.int64, RawType.BYTES: object}
