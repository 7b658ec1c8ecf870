"""What a trained model says about the eval split, through its own `explain`
signature: global feature importance (mean absolute attribution) and the
share of examples it flags as outliers. For the run report.

Loading the model and explaining the split was most of what a cached re-run
spent on its report (about a second: docs/performance.md#a-cached-re-run), for
an answer that cannot have changed: `cached` keeps
each answer in a file named by what it is a function of, the model's and the
split's files (name, size, modification time) and the limit, so a re-run of the
same model on the same split reads it, and a model or split written anew (a
workspace deleted and run again reuses artifact paths) misses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional

import tensorflow as tf

from foundation import saved_models
from foundation.atomic_file import write_atomically
from taxi_model import contract

# Enough for stable means (standard error of a share near 1% is 0.2 points
# at 2,000 examples), few enough to take seconds.
MAX_EXAMPLES = 2000
_BATCH = 500
# Part of every cache key: a change to what the insights hold or how they are computed bumps it.
CACHE_FORMAT = 1


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
    dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').take(limit).batch(_BATCH)
    return [contract.from_tf_example(tf.train.Example.FromString(record))
            for batch in dataset.as_numpy_iterator() for record in batch]


def explain_eval_split(model_dir: str, examples_uri: str, limit: int = MAX_EXAMPLES) -> Optional[EvalInsights]:
    """The model's view of the eval split; None if the model has no `explain` signature."""
    model = saved_models.load(model_dir)
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


def cache_key(model_dir: str, examples_uri: str, split: str = 'eval', limit: int = MAX_EXAMPLES) -> str:
    """A digest of what `explain_eval_split` is a function of."""
    described = {'format': CACHE_FORMAT, 'limit': limit, 'split': split, 'model': saved_models.files(model_dir),
                 'examples': saved_models.files(os.path.join(examples_uri, f'Split-{split}'))}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def cached(model_dir: str, examples_uri: str, cache_dir: str, limit: int = MAX_EXAMPLES) -> Optional[EvalInsights]:
    """`explain_eval_split`, read from `cache_dir` when the same model and split were explained before;
    else computed and kept there (written whole or not at all)."""
    path = os.path.join(cache_dir, f'insights-{cache_key(model_dir, examples_uri, limit=limit)[:32]}.json')
    if os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
        return None if kept is None else EvalInsights(**kept)
    insights = explain_eval_split(model_dir, examples_uri, limit)
    write_atomically(path, json.dumps(None if insights is None else dataclasses.asdict(insights)))
    return insights
