"""Trainer module: trains the model on Transform's output and exports it.

`run_fn` is referenced by module path (`taxi_model.training.run_fn`). The
model is `taxi_model.model`; the export (`taxi_model.export`) embeds the
Transform graph and the signatures of the serving contract (`taxi_model.contract`).
"""

from __future__ import annotations

from typing import List

import tensorflow as tf
# Keras 2, as tf.Transform uses: its transform layer and TFMA expect it, and
# TF 2.16 points tf.keras at Keras 3.
import tf_keras as keras
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from taxi_model.export import export_serving_model
from taxi_model.features import LABEL
from taxi_model.hyperparameters import Hyperparameters
from taxi_model.model import ENCODER, build_keras_model, mean_representations, model_inputs

# Training batches averaged for the explanation baseline (12,800 examples at the default batch size).
BASELINE_BATCHES = 200

def _dataset(files: List[str], data_accessor, tf_transform_output: tft.TFTransformOutput,
             batch_size: int, seed: int) -> tf.data.Dataset:
    return data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL.name, shuffle_seed=seed),
        tf_transform_output.transformed_metadata.schema).repeat()


def require_keras_2() -> None:
    """Fails at once, and says why, where tf.keras is Keras 3: the Transform layer
    and TFMA would otherwise fail later and obscurely."""
    if not tf.keras.Model.__module__.startswith('tf_keras'):
        raise RuntimeError(f'tf.keras is {tf.keras.Model.__module__.split(".")[0]} (Keras 3); tf.Transform and TFMA '
                           'need Keras 2: set TF_USE_LEGACY_KERAS=1 in the environment before TensorFlow loads')


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point."""
    require_keras_2()
    hp = Hyperparameters.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)

    model = build_keras_model(hp)
    model.fit(
        train.map(lambda features, label: (model_inputs(features), label)),
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation.map(lambda features, label: (model_inputs(features), label)),
        validation_steps=fn_args.eval_steps,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch')])
    logging.info('Trained %d steps; final metrics: %s', fn_args.train_steps,
                 {k: v[-1] for k, v in model.history.history.items()})
    baseline = mean_representations(model.get_layer(ENCODER),
                                    train.map(lambda features, label: model_inputs(features)).take(BASELINE_BATCHES))
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, baseline,
                         schema_path=fn_args.schema_path)
