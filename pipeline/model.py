"""Trainer module: a wide-and-deep Keras model over the transformed features.

`run_fn` is referenced by module path (`pipeline.model.run_fn`). The exported
SavedModel carries the Transform graph, so both serving signatures take raw
features:

- `serving_default`: serialized tf.Example (the TFX and TFMA standard);
- `serving_raw`: one named tensor per raw feature, which is what TF Serving
  REST clients send as plain JSON (`{"instances": [{"fare": 9.5, ...}]}`);
- `classification` / `regression`: serialized tf.Example in, TF Serving's
  Classify (`classes`, `scores`) and Regress (`outputs`) contract out, so the
  `:classify` and `:regress` APIs work; their method names are set to TF
  Serving's, which `tf.saved_model.save` cannot do itself;
- `transform_features`: serialized tf.Example with the label column, returning
  transformed features and label, for TFMA's preprocessing step.

Next to the model, `assets.extra/tf_serving_warmup_requests` holds one request
per client-facing signature, which servers replay before taking traffic.
"""

from __future__ import annotations

from typing import Dict, List

import tensorflow as tf
# Keras 2, as tf.Transform uses: its transform layer and TFMA expect it, and
# TF 2.16 points tf.keras at Keras 3.
import tf_keras as keras
from tensorflow.python.autograph.core import config as autograph_config
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from tensorflow.core.protobuf import saved_model_pb2

from pipeline.config import Hyperparameters
from pipeline.features import FEATURES, LABEL
from serving import CLASSIFY_METHOD, REGRESS_METHOD, warmup

# AutoGraph skips the `keras` package but not `tf_keras`, its Keras 2 twin, so
# every Keras layer call gets AST-converted while tracing: measured here, 60 of
# the Trainer's 90 seconds. Keras code needs no conversion; skip it as TF does.
if not any(getattr(rule, 'module_prefix', None) == 'tf_keras' for rule in autograph_config.CONVERSION_RULES):
    autograph_config.CONVERSION_RULES += (autograph_config.DoNotConvert('tf_keras'),)

PREDICTION_KEY = 'probabilities'
RAW_SIGNATURE = 'serving_raw'
# Class labels of the Classify API: not a big tipper, a big tipper.
CLASS_LABELS = ('0', '1')


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
    output = keras.layers.Dense(1, activation='sigmoid', name=PREDICTION_KEY)(joined)
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


def _model_inputs(transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The Keras inputs, in the shape the model declares: [batch, 1]."""
    return {f.transformed_name: tf.reshape(transformed[f.transformed_name], [-1, 1]) for f in FEATURES}


def _raw_input_specs() -> Dict[str, tf.TensorSpec]:
    return {f.name: tf.TensorSpec([None], f.raw_type.tf_dtype, name=f.name) for f in FEATURES}


def _as_parsed(values: tf.Tensor, spec) -> tf.Tensor | tf.SparseTensor:
    """A dense [batch] request tensor in the form `tf.io.parse_example` gives.

    Optional columns parse to [batch, 1] SparseTensors, so a JSON client needs
    a way to say "missing": an empty string, a NaN, or for integer columns
    (whose schema domains are all non-negative) a negative number.
    """
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(values, [-1] + list(spec.shape))
    if values.dtype == tf.string:
        present = tf.not_equal(values, '')
    elif values.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(values))
    else:
        present = tf.greater_equal(values, 0)
    rows = tf.where(present)
    return tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), tf.boolean_mask(values, present),
                           tf.stack([tf.shape(values, out_type=tf.int64)[0], 1]))


class ExportModule(tf.Module):
    """The model plus the Transform layer, with the three signatures."""

    def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        self.model = model
        # Tracked as an attribute so the Transform graph is saved with the model.
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._feature_spec = tf_transform_output.raw_feature_spec()
        # Serving parses only the model's features: columns the model ignores
        # (and the label's source) must not be required of a client.
        self._serving_spec = {f.name: self._feature_spec[f.name] for f in FEATURES}

    def _predict(self, raw_features) -> Dict[str, tf.Tensor]:
        transformed = self.tft_layer(raw_features)
        return {PREDICTION_KEY: self.model(_model_inputs(transformed))}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        examples = tf.TensorSpec([None], tf.string, name='examples')

        @tf.function(input_signature=[examples])
        def serve_tf_examples(serialized):
            return self._predict(tf.io.parse_example(serialized, self._serving_spec))

        @tf.function(input_signature=[_raw_input_specs()])
        def serve_raw(features):
            return self._predict({name: _as_parsed(values, self._feature_spec[name])
                                  for name, values in features.items()})

        @tf.function(input_signature=[examples])
        def transform_features(serialized):
            return self.tft_layer(tf.io.parse_example(serialized, self._feature_spec))

        # TF Serving's Classify/Regress contract: one string input named `inputs`.
        inputs = tf.TensorSpec([None], tf.string, name='inputs')

        @tf.function(input_signature=[inputs])
        def classify(serialized):
            positive = serve_tf_examples(serialized)[PREDICTION_KEY]
            batch = tf.shape(positive)[0]
            return {'classes': tf.tile(tf.constant([CLASS_LABELS]), [batch, 1]),
                    'scores': tf.concat([1.0 - positive, positive], axis=1)}

        @tf.function(input_signature=[inputs])
        def regress(serialized):
            return {'outputs': tf.reshape(serve_tf_examples(serialized)[PREDICTION_KEY], [-1])}

        return {
            'serving_default': serve_tf_examples.get_concrete_function(),
            RAW_SIGNATURE: serve_raw.get_concrete_function(),
            warmup.CLASSIFY: classify.get_concrete_function(),
            warmup.REGRESS: regress.get_concrete_function(),
            'transform_features': transform_features.get_concrete_function(),
        }


def _set_method_names(export_dir: str, method_names: Dict[str, str]) -> None:
    """Gives signatures TF Serving's Classify/Regress method names.

    TF 2 saves every signature as `tensorflow/serving/predict`; TF Serving's
    Classify and Regress APIs refuse anything else. Loading ignores the field.
    """
    path = f'{export_dir}/saved_model.pb'
    saved_model = saved_model_pb2.SavedModel.FromString(tf.io.gfile.GFile(path, 'rb').read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            meta_graph.signature_def[name].method_name = method
    with tf.io.gfile.GFile(path, 'wb') as f:
        f.write(saved_model.SerializeToString())


def export_serving_model(model, tf_transform_output, export_dir: str) -> None:
    module = ExportModule(model, tf_transform_output)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    _set_method_names(export_dir, {warmup.CLASSIFY: CLASSIFY_METHOD, warmup.REGRESS: REGRESS_METHOD})
    warmup.write_warmup_requests(export_dir)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point."""
    hp = Hyperparameters.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)

    model = build_keras_model(hp)
    model.fit(
        train.map(lambda features, label: (_model_inputs(features), label)),
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation.map(lambda features, label: (_model_inputs(features), label)),
        validation_steps=fn_args.eval_steps,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch')])
    logging.info('Trained %d steps; final metrics: %s', fn_args.train_steps,
                 {k: v[-1] for k, v in model.history.history.items()})
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
