"""Trainer module: trains the model on ExampleGen's examples through Transform's graph, and exports it.

`run_fn` is referenced by module path (`taxi_model.training.run_fn`). The
model is `taxi_model.model`; the export (`taxi_model.export`) embeds the
Transform graph and the signatures of the serving contract (`taxi_model.contract`).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import List, Tuple

import numpy as np

import tensorflow as tf
# Keras 2, as tf.Transform uses: its transform layer and TFMA expect it, and
# TF 2.16 points tf.keras at Keras 3.
import tf_keras as keras
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from foundation.model_files import TRAINING_RECORD
from taxi_model.export import Evaluation, export_serving_model
from taxi_model.hyperparameters import Hyperparameters
from taxi_model.inputs import VALIDATION_BATCH, TransformedReader
from taxi_model.model import ENCODER, build_keras_model, mean_representations

# Training examples averaged for the explanation baseline: the first of the shuffled training stream,
# the same examples whatever the batch size.
BASELINE_EXAMPLES = 12_800
# Training is validated every ~VALIDATE_EVERY examples (1,000 steps at the default batch of 64; once,
# at the end, when there are fewer) and stops when validation AUC has not improved for PATIENCE checks,
# keeping the best weights: more passes over small or duplicated data overfit it
# (docs/performance.md#epochs-and-early-stopping). Counted in examples, not steps, so a larger batch
# is checked as often per example seen (docs/performance.md#the-trainers-batch-size-and-steps-per-execution).
VALIDATE_EVERY = 64_000
PATIENCE = 2
# The calibration the model carries is fitted on at most this many eval examples (all of them at the
# sample's size); read in batches of EVAL_BATCH.
CALIBRATION_EXAMPLES = 20_000
EVAL_BATCH = 1024

def validation_schedule(train_steps: int, batch_size: int) -> Tuple[int, int]:
    """(checks, steps between them): a check about every VALIDATE_EVERY examples, the last at `train_steps`."""
    checks = math.ceil(train_steps / max(1, round(VALIDATE_EVERY / batch_size)))
    return checks, math.ceil(train_steps / checks)


def evaluation_split(files: List[str], reader: TransformedReader, limit: int = CALIBRATION_EXAMPLES) -> Evaluation:
    """The eval split once through, in order, as model inputs and labels (its first `limit` examples)."""
    started = time.perf_counter()
    dataset = reader.batches(files, tfxio.TensorFlowDatasetOptions(batch_size=EVAL_BATCH, shuffle=False, num_epochs=1))
    inputs, labels, count = {}, [], 0
    for features, label in dataset.as_numpy_iterator():
        for key, value in features.items():
            inputs.setdefault(key, []).append(value)
        labels.append(np.reshape(label, [-1]))
        count += len(labels[-1])
        if count >= limit:
            break
    return Evaluation({key: np.concatenate(parts)[:limit] for key, parts in inputs.items()},
                      np.concatenate(labels)[:limit], time.perf_counter() - started)


def require_keras_2() -> None:
    """Fails at once, and says why, where tf.keras is Keras 3: the Transform layer
    and TFMA would otherwise fail later and obscurely."""
    if not tf.keras.Model.__module__.startswith('tf_keras'):
        raise RuntimeError(f'tf.keras is {tf.keras.Model.__module__.split(".")[0]} (Keras 3); tf.Transform and TFMA '
                           'need Keras 2: set TF_USE_LEGACY_KERAS=1 in the environment before TensorFlow loads')


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point."""
    require_keras_2()
    hp = Hyperparameters.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    reader = TransformedReader(fn_args.data_accessor, tf_transform_output)
    train = reader.shuffled(fn_args.train_files, hp.batch_size, hp.seed)
    evaluation = reader.shuffled(fn_args.eval_files, VALIDATION_BATCH, hp.seed)

    model = build_keras_model(hp)
    checks, chunk = validation_schedule(fn_args.train_steps, hp.batch_size)
    stopper = keras.callbacks.EarlyStopping(monitor='val_auc', mode='max', patience=PATIENCE,
                                            restore_best_weights=True)
    started = time.perf_counter()
    model.fit(
        train,
        steps_per_epoch=chunk, epochs=checks,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch'), stopper])
    fit_seconds = time.perf_counter() - started
    record = {'steps_planned': checks * chunk, 'steps_taken': len(model.history.epoch) * chunk,
              'steps_kept': (stopper.best_epoch + 1) * chunk, 'validate_every': chunk,
              'validation_auc': [float(v) for v in model.history.history['val_auc']],
              'validation_examples': fn_args.eval_steps * VALIDATION_BATCH,
              'batch_size': hp.batch_size, 'fit_seconds': round(fit_seconds, 3)}
    logging.info('Training: %s', record)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_RECORD), 'w') as f:
        json.dump(record, f)
    baseline = mean_representations(model.get_layer(ENCODER),
                                    train.map(lambda inputs, label: inputs).take(
                                        math.ceil(BASELINE_EXAMPLES / hp.batch_size)))
    evaluated = evaluation_split(fn_args.eval_files, reader)
    calibrated = export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, baseline,
                                      schema_path=fn_args.schema_path, evaluation=evaluated)
    logging.info('Calibration on %d eval examples (label rate %.4f): ECE %.4f -> %.4f, %.2fs',
                 calibrated.examples, calibrated.label_rate, calibrated.ece_before, calibrated.ece_after,
                 calibrated.seconds)
