"""What the Trainer and the Tuner read: ExampleGen's raw examples, transformed as they are read.

The pipeline's Transform analyses the data and writes the transform graph, but does not
materialise transformed examples (`materialize=False`, docs/decisions.md): encoding every row
of a large span as a second set of tf.Examples cost more than the training reads, and early
stopping reads a fraction of them. The graph runs here, on each batch, the graph the served
model embeds, so training and serving transform alike by construction.
"""

from __future__ import annotations

from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from taxi_model.features import LABEL
from taxi_model.model import model_inputs

# Validation during training reads batches of this many examples, whatever the training batch, so
# `eval_steps` is the same number of examples at every batch size: a larger training batch is not
# checked on more examples, at more cost (docs/performance.md#the-trainers-batch-size-and-steps-per-execution).
VALIDATION_BATCH = 64


class TransformedReader:
    """Reads (model inputs, label) batches of raw examples through one transform graph.

    The graph is loaded and traced once per reader, not once per dataset: tracing the Transform
    graph into a tf.data function is slow (docs/performance.md#transform-without-materialisation),
    and the Trainer reads three datasets.
    """

    def __init__(self, data_accessor, tf_transform_output: tft.TFTransformOutput):
        self._factory = data_accessor.tf_dataset_factory
        self._raw_schema = tf_transform_output.raw_metadata.schema
        layer = tf_transform_output.transform_features_layer()

        @tf.function(autograph=False)
        def transform(raw):
            features = layer(raw)
            label = features.pop(LABEL.name)
            return model_inputs(features), label

        self._transform = transform

    def batches(self, files: List[str], options: tfxio.TensorFlowDatasetOptions) -> tf.data.Dataset:
        """The raw examples in `files` through the graph. `options` say how to batch, shuffle and
        repeat, as for TFX's `tf_dataset_factory`; their `label_key` must be unset, as the label is
        one of the graph's outputs (derived from raw columns)."""
        if options.label_key:
            raise ValueError(f'the label is an output of the transform graph, not a raw column; got label_key '
                             f'{options.label_key!r}')
        # The graph runs on tf.data's threads, a batch or more ahead of the step that reads it, in order
        # (`deterministic`): the same batches as one at a time, the step no longer waiting for its input
        # (docs/performance.md#the-trainers-input-ahead-of-its-steps).
        return (self._factory(files, options, self._raw_schema)
                .map(self._transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))

    def shuffled(self, files: List[str], batch_size: int, seed: int) -> tf.data.Dataset:
        """Shuffled batches, repeated without end: what training and its validation read."""
        return self.batches(files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle_seed=seed)).repeat()
