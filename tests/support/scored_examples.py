"""Evaluator test data: an eval split written from plain rows, and "models" whose probability is one float
column of the example, so a test chooses the predictions."""

import os
from typing import Dict, Iterable

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts


def eval_split(uri: str, rows: Iterable[Dict[str, object]]) -> standard_artifacts.Examples:
    """An Examples artifact at `uri` whose only split, eval, holds `rows` (bytes, int or float values)."""
    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names(['eval'])
    os.makedirs(os.path.join(uri, 'Split-eval'))
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(uri, 'Split-eval', 'data.gz'), options) as writer:
        for row in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])) if isinstance(value, bytes)
                else tf.train.Feature(int64_list=tf.train.Int64List(value=[value])) if isinstance(value, int)
                else tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                for name, value in row.items()})).SerializeToString())
    return artifact


class ColumnScorer(tf.Module):
    """A "model" whose probability is one float column of the example."""

    def __init__(self, column: str):
        super().__init__()
        self._column = column

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def predict(self, examples):
        parsed = tf.io.parse_example(examples, {self._column: tf.io.FixedLenFeature([1], tf.float32)})
        return {'probabilities': parsed[self._column]}


def save_scorer(column: str, export_dir: str) -> None:
    """The scorer of `column` as a SavedModel with its serving_default signature."""
    scorer = ColumnScorer(column)
    tf.saved_model.save(scorer, export_dir, signatures={'serving_default': scorer.predict})
