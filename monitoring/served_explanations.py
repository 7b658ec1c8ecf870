"""A pushed version's explanation signature called in batch on rows of its request log, for attribution
drift (monitoring/attribution_drift.py).

The log holds the features as served, less the values the model declares missing
(`assets.extra/missing_values.json`); they are put back as the same markers, so the signature sees
what it saw when it answered. Which signature explains and which of its outputs holds each feature's
attribution, the version says itself (its calibration's attribution reference): nothing here knows
the taxi model.
"""

from __future__ import annotations

import os
from typing import Callable, Dict

import numpy as np
import pyarrow as pa
import tensorflow as tf

from foundation.calibration import AttributionReference
from serving.servable import read_missing_values

# Rows per call: an integrated-gradients call holds its steps' copies of every row's inputs.
CHUNK = 250
_MARKERS = {'nan': float('nan'), 'negative': -1, 'empty': b''}


def explainer(version_dir: str, reference: AttributionReference) -> Callable[[pa.Table], Dict[str, np.ndarray]]:
    """A function from logged rows (a request-log table) to {feature: attribution per row}."""
    function = tf.saved_model.load(os.path.abspath(version_dir)).signatures[reference.signature]
    markers = read_missing_values(version_dir).get(reference.signature, {})
    specs = function.structured_input_signature[1]

    def column(table: pa.Table, name: str, spec: tf.TensorSpec) -> np.ndarray:
        fill = _MARKERS.get(markers.get(name), b'' if spec.dtype == tf.string else 0)
        if name not in table.column_names:
            values = [fill] * table.num_rows
        else:
            values = [v[0] if v else fill for v in table.column(name).to_pylist()]
        if spec.dtype == tf.string:
            return np.array([v if isinstance(v, bytes) else str(v).encode() for v in values], dtype=object)
        return np.array(values, dtype=spec.dtype.as_numpy_dtype)

    def explain(table: pa.Table) -> Dict[str, np.ndarray]:
        parts = []
        for start in range(0, table.num_rows, CHUNK):
            rows = table.slice(start, CHUNK)
            outputs = function(**{name: tf.constant(column(rows, name, spec)) for name, spec in specs.items()})
            parts.append({feature: np.reshape(outputs[key].numpy(), [-1])
                          for feature, key in reference.outputs.items()})
        if not parts:
            return {feature: np.zeros(0) for feature in reference.outputs}
        return {feature: np.concatenate([p[feature] for p in parts]) for feature in reference.outputs}
    return explain
