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


def transformed_batches(files: List[str], data_accessor, tf_transform_output: tft.TFTransformOutput,
                        options: tfxio.TensorFlowDatasetOptions) -> tf.data.Dataset:
    """(model inputs, label) batches of the raw examples in `files`, through the transform graph.

    `options` say how to batch, shuffle and repeat, as for TFX's `tf_dataset_factory`; their
    `label_key` must be unset, as the label is one of the graph's outputs (derived from raw columns).
    """
    if options.label_key:
        raise ValueError(f'the label is an output of the transform graph, not a raw column; got label_key '
                         f'{options.label_key!r}')
    layer = tf_transform_output.transform_features_layer()

    def transform(raw):
        features = layer(raw)
        label = features.pop(LABEL.name)
        return model_inputs(features), label

    return data_accessor.tf_dataset_factory(files, options, tf_transform_output.raw_metadata.schema).map(transform)
