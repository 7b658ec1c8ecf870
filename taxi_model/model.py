"""Trainer module: a wide-and-deep Keras model over the transformed features.

`run_fn` is referenced by module path (`taxi_model.model.run_fn`). It trains
on Transform's output and exports through `taxi_model.export`, whose
SavedModel carries the Transform graph and the signatures of the serving
contract (`taxi_model.contract`).
"""

from __future__ import annotations

from typing import List

import tensorflow as tf
# Keras 2, as tf.Transform uses: its transform layer and TFMA expect it, and
# TF 2.16 points tf.keras at Keras 3.
import tf_keras as keras
from tensorflow.python.autograph.core import config as autograph_config
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from taxi_model import contract
from taxi_model.export import export_serving_model, model_inputs
from taxi_model.features import FEATURES, LABEL
from taxi_model.hyperparameters import Hyperparameters

# AutoGraph skips the `keras` package but not `tf_keras`, its Keras 2 twin, so
# every Keras layer call gets AST-converted while tracing: measured here, 60 of
# the Trainer's 90 seconds. Keras code needs no conversion; skip it as TF does.
if not any(getattr(rule, 'module_prefix', None) == 'tf_keras' for rule in autograph_config.CONVERSION_RULES):
    autograph_config.CONVERSION_RULES += (autograph_config.DoNotConvert('tf_keras'),)


def build_keras_model(hp: Hyperparameters) -> keras.Model:
    """Wide part: one-hot categoricals. Deep part: scaled numerics and embeddings."""
    inputs, wide, deep = {}, [], []
    for f in FEATURES:
        name = f.transformed_name
        if f.is_categorical:
            inputs[name] = keras.layers.Input(shape=(1,), name=name, dtype=tf.int64)
            wide.append(keras.layers.CategoryEncoding(
                num_tokens=f.num_categories, output_mode='one_hot', name=f'{name}_onehot')(inputs[name]))
            embedded = keras.layers.Embedding(
                f.num_categories, hp.embedding_dim, name=f'{name}_embedding')(inputs[name])
            deep.append(keras.layers.Flatten()(embedded))
        else:
            inputs[name] = keras.layers.Input(shape=(1,), name=name, dtype=tf.float32)
            deep.append(inputs[name])
    hidden = keras.layers.concatenate(deep)
    for units in hp.hidden_units:
        hidden = keras.layers.Dense(units, activation='relu')(hidden)
    joined = keras.layers.concatenate([hidden] + wide)
    output = keras.layers.Dense(1, activation='sigmoid', name=contract.PROBABILITIES)(joined)
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.learning_rate),
        loss='binary_crossentropy',
        metrics=[keras.metrics.AUC(name='auc'), keras.metrics.BinaryAccuracy(name='accuracy')])
    return model


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
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
