"""The Keras model: wide and deep over the transformed features, built as an
encoder (ids to one-hot and embedding representations) followed by a head
(representations to the tip probability).

The split is what lets `taxi_model.export` explain a prediction: integrated
gradients interpolate between representations, where the head is
differentiable and ids are not. Training is `taxi_model.training.run_fn`.
"""

from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

import tensorflow as tf
# Keras 2, as tf.Transform uses: its transform layer and TFMA expect it, and
# TF 2.16 points tf.keras at Keras 3.
import tf_keras as keras
from tensorflow.python.autograph.core import config as autograph_config

from taxi_model import contract
from taxi_model.features import FEATURES
from taxi_model.hyperparameters import Hyperparameters


# AutoGraph skips the `keras` package but not `tf_keras`, its Keras 2 twin, so
# every Keras layer call gets AST-converted while tracing, most of the Trainer's
# time (docs/decisions.md#tf_keras-and-autograph). Keras code needs no conversion;
# skip it as TF does.
if not any(getattr(rule, 'module_prefix', None) == 'tf_keras' for rule in autograph_config.CONVERSION_RULES):
    autograph_config.CONVERSION_RULES += (autograph_config.DoNotConvert('tf_keras'),)


def model_inputs(transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The Keras inputs, in the shape the model declares: [batch, 1]."""
    return {f.transformed_name: tf.reshape(transformed[f.transformed_name], [-1, 1]) for f in FEATURES}


ENCODER, HEAD = 'encoder', 'head'
# The head's last layer before the sigmoid: explanations attribute log-odds.
LOGIT = 'logit'


# A scaled feature with `steps` is also one-hot in `steps` equal bins of its z-score over this range, plus one
# bin below and one above it: enough for fare (z -1.5 to 4.5 is about -$7 to $67 on the taxi sample).
STEP_RANGE = (-1.5, 4.5)


def step_boundaries(f) -> list:
    """The z-score bin boundaries of a scaled feature's steps (`Feature.steps`): steps + 1 of them."""
    return [float(b) for b in np.linspace(STEP_RANGE[0], STEP_RANGE[1], f.steps + 1)]


def representation_keys(f) -> tuple:
    """The encoder's outputs for one feature: what the head reads of it, and what
    an explanation attributes back to it (its first one stands for it in the explanation's baseline)."""
    name = f.transformed_name
    if f.is_categorical:
        return (f'{name}_onehot', f'{name}_embedding')
    return (name, f'{name}_steps_onehot') if f.steps else (name,)


def build_encoder(hp: Hyperparameters) -> keras.Model:
    """Transformed features to continuous representations: ids become a one-hot
    (wide part) and an embedding (deep part); scaled numbers pass through, and
    those declared with steps are also one-hot in fixed z-score bins (wide part)."""
    inputs, outputs = {}, {}
    for f in FEATURES:
        name = f.transformed_name
        if f.is_categorical:
            inputs[name] = keras.layers.Input(shape=(1,), name=name, dtype=tf.int64)
            onehot_key, embedding_key = representation_keys(f)
            outputs[onehot_key] = keras.layers.CategoryEncoding(
                num_tokens=f.num_categories, output_mode='one_hot', name=onehot_key)(inputs[name])
            embedded = keras.layers.Embedding(f.num_categories, hp.embedding_dim, name=embedding_key)(inputs[name])
            outputs[embedding_key] = keras.layers.Flatten()(embedded)
        else:
            inputs[name] = keras.layers.Input(shape=(1,), name=name, dtype=tf.float32)
            outputs[name] = keras.layers.Identity()(inputs[name])
            if f.steps:
                _, steps_key = representation_keys(f)
                bins = keras.layers.Discretization(bin_boundaries=step_boundaries(f))(inputs[name])
                outputs[steps_key] = keras.layers.CategoryEncoding(
                    num_tokens=f.steps + 2, output_mode='one_hot', name=steps_key)(bins)
    return keras.Model(inputs=inputs, outputs=outputs, name=ENCODER)


def build_head(encoder: keras.Model, hp: Hyperparameters) -> keras.Model:
    """Representations to the probability: differentiable in every input, which
    is what lets integrated gradients attribute a prediction to features."""
    inputs = {key: keras.layers.Input(shape=tensor.shape[1:], name=key)
              for key, tensor in encoder.output.items()}
    deep = [inputs[key] for f in FEATURES for key in representation_keys(f) if not key.endswith('_onehot')]
    wide = [inputs[key] for f in FEATURES for key in representation_keys(f) if key.endswith('_onehot')]
    hidden = keras.layers.concatenate(deep)
    for units in hp.hidden_units:
        hidden = keras.layers.Dense(units, activation='relu')(hidden)
    joined = keras.layers.concatenate([hidden] + wide)
    logit = keras.layers.Dense(1, name=LOGIT)(joined)
    output = keras.layers.Activation('sigmoid', name=contract.PROBABILITIES)(logit)
    return keras.Model(inputs=inputs, outputs=output, name=HEAD)


def build_keras_model(hp: Hyperparameters) -> keras.Model:
    """Wide and deep: one-hot categoricals (wide); scaled numerics and embeddings
    through dense layers (deep). Built as encoder then head, so an explanation
    can interpolate between representations."""
    encoder = build_encoder(hp)
    head = build_head(encoder, hp)
    model = keras.Model(inputs=encoder.input, outputs=head(encoder(encoder.input)))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.learning_rate),
        loss='binary_crossentropy',
        metrics=[keras.metrics.AUC(name='auc'), keras.metrics.BinaryAccuracy(name='accuracy')],
        steps_per_execution=hp.steps_per_execution)
    return model


def mean_representations(encoder: keras.Model, batches: Iterable[Dict[str, tf.Tensor]]) -> Dict[str, np.ndarray]:
    """The mean of each encoder output over `batches` of model inputs, shape [1, width]:
    over training data, the explanation baseline (the "average training example":
    category frequencies for a one-hot, the mean embedding, the mean z-score)."""
    # One traced function for every batch: called eagerly, Keras's dispatch dominated each batch
    # (docs/performance.md#savings-in-a-fresh-run).
    @tf.function(reduce_retracing=True)
    def summed(inputs):
        return {key: tf.reduce_sum(value, axis=0) for key, value in encoder(inputs).items()}

    sums, count = {}, 0
    for inputs in batches:
        for key, value in summed(inputs).items():
            sums[key] = sums.get(key, 0.0) + value.numpy()
        count += int(tf.shape(next(iter(inputs.values())))[0])
    if not count:
        raise ValueError('no examples to average the representations over')
    return {key: (total / count)[None, :].astype(np.float32) for key, total in sums.items()}
