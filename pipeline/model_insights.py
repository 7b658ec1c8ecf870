"""What a trained model says about the eval split, through its own `explain`
signature: global feature importance (mean absolute attribution) and the
share of examples it flags as outliers. For the run report."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

import tensorflow as tf

from taxi_model import contract

# Enough for stable means (standard error of a share near 1% is 0.2 points
# at 2,000 examples), few enough to take seconds.
MAX_EXAMPLES = 2000
_BATCH = 500


@dataclasses.dataclass(frozen=True)
class EvalInsights:
    examples: int
    # Mean |attribution| per raw feature, largest first.
    importance: Dict[str, float]
    outlier_share: float
    # Per flagged feature, the share of examples flagged for it.
    flagged_share: Dict[str, float]


def eval_examples(examples_uri: str, split: str = 'eval', limit: int = MAX_EXAMPLES):
    """Up to `limit` rows of an ExampleGen split (gzipped TFRecords of tf.Examples)."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f'Split-{split}', '*')))
    dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').take(limit)
    return [contract.from_tf_example(tf.train.Example.FromString(record)) for record in dataset.as_numpy_iterator()]


def explain_eval_split(model_dir: str, examples_uri: str, limit: int = MAX_EXAMPLES) -> Optional[EvalInsights]:
    """The model's view of the eval split; None if the model has no `explain` signature."""
    model = tf.saved_model.load(model_dir)
    if contract.EXPLAIN not in model.signatures:
        return None
    explain = model.signatures[contract.EXPLAIN]
    rows = eval_examples(examples_uri, limit=limit)
    if not rows:
        return None
    absolute, outliers, flagged = {}, 0, {}
    for start in range(0, len(rows), _BATCH):
        inputs = contract.raw_inputs(rows[start:start + _BATCH])
        outputs = {k: v.numpy() for k, v in explain(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        for row in contract.attributions(outputs):
            for name, value in row.items():
                absolute[name] = absolute.get(name, 0.0) + abs(value)
        for flags in contract.flags(outputs):
            outliers += bool(flags.is_outlier)
            for name in flags.features:
                flagged[name] = flagged.get(name, 0) + 1
    n = len(rows)
    importance = dict(sorted(((k, v / n) for k, v in absolute.items()), key=lambda kv: -kv[1]))
    return EvalInsights(n, importance, outliers / n, {k: v / n for k, v in sorted(flagged.items())})
