"""The exported SavedModel: the Keras model, the Transform graph and the signatures.

The SavedModel embeds the Transform graph, so every signature takes raw
features (names and keys from `taxi_model.contract`):

- `serving_default`: serialized tf.Example (the TFX and TFMA standard);
- `serving_raw`: one named tensor per raw feature, which is what TF Serving
  REST clients send as plain JSON (`{"instances": [{"fare": 9.5, ...}]}`);
- `classification` / `regression`: serialized tf.Example in, TF Serving's
  Classify (`classes`, `scores`) and Regress (`outputs`) contract out, so the
  `:classify` and `:regress` APIs work; their method names are set to TF
  Serving's, which `tf.saved_model.save` cannot do itself;
- `transform_features`: serialized tf.Example with the label column, returning
  transformed features and label, for TFMA's preprocessing step.

Next to the model, under `assets.extra/`:
- `tf_serving_warmup_requests`: one request per client signature, which TF
  Serving (and the embedded server) replay before the version takes traffic;
- `missing_values.json`: how `serving_raw` marks a missing value, so a server's
  request log can leave such values out without knowing this model.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (classification_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from taxi_model import contract
from taxi_model.features import FEATURES

# TF Serving replays the PredictionLog records in this file at load time.
WARMUP_FILE = 'assets.extra/tf_serving_warmup_requests'

# One typical trip from the taxi sample and one with every optional value
# missing, so both the dense and the "missing" paths of each signature run.
WARMUP_ROWS: List[Mapping[str, object]] = [
    {'trip_miles': 1.6, 'fare': 7.25, 'trip_seconds': 480, 'pickup_latitude': 41.899,
     'pickup_longitude': -87.626, 'dropoff_latitude': 41.880, 'dropoff_longitude': -87.632,
     'trip_start_hour': 14, 'trip_start_day': 3, 'trip_start_month': 6, 'pickup_community_area': 8,
     'dropoff_community_area': 32, 'payment_type': 'Credit Card', 'company': 'Taxi Affiliation Services'},
    {'trip_start_hour': 0, 'trip_start_day': 1, 'trip_start_month': 1, 'fare': 0.0,
     'trip_miles': 0.0, 'trip_seconds': 0, 'payment_type': 'Cash'},
]


def model_inputs(transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The Keras inputs, in the shape the model declares: [batch, 1]."""
    return {f.transformed_name: tf.reshape(transformed[f.transformed_name], [-1, 1]) for f in FEATURES}


def _raw_input_specs() -> Dict[str, tf.TensorSpec]:
    return {f.name: tf.TensorSpec([None], f.raw_type.tf_dtype, name=f.name) for f in FEATURES}


def _as_parsed(values: tf.Tensor, spec) -> tf.Tensor | tf.SparseTensor:
    """A dense [batch] request tensor in the form `tf.io.parse_example` gives.

    Optional columns parse to [batch, 1] SparseTensors, so a JSON client needs
    a way to say "missing": `contract.MISSING`, i.e. an empty string, a NaN, or
    for integer columns a negative number.
    """
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(values, [-1] + list(spec.shape))
    if values.dtype == tf.string:
        present = tf.not_equal(values, contract.MISSING[contract.RawType.BYTES])
    elif values.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(values))
    else:
        present = tf.greater_equal(values, 0)
    rows = tf.where(present)
    return tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), tf.boolean_mask(values, present),
                           tf.stack([tf.shape(values, out_type=tf.int64)[0], 1]))


class ExportModule(tf.Module):
    """The model plus the Transform layer, with every signature of the contract."""

    def __init__(self, model, tf_transform_output: tft.TFTransformOutput):
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
        return {contract.PROBABILITIES: self.model(model_inputs(transformed))}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        examples = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)

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

        inputs = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_API_INPUT)

        @tf.function(input_signature=[inputs])
        def classify(serialized):
            positive = serve_tf_examples(serialized)[contract.PROBABILITIES]
            batch = tf.shape(positive)[0]
            return {tf.saved_model.CLASSIFY_OUTPUT_CLASSES: tf.tile(tf.constant([contract.CLASS_LABELS]), [batch, 1]),
                    tf.saved_model.CLASSIFY_OUTPUT_SCORES: tf.concat([1.0 - positive, positive], axis=1)}

        @tf.function(input_signature=[inputs])
        def regress(serialized):
            return {tf.saved_model.REGRESS_OUTPUTS: tf.reshape(serve_tf_examples(serialized)[contract.PROBABILITIES],
                                                               [-1])}

        return {
            contract.PREDICT_EXAMPLES: serve_tf_examples.get_concrete_function(),
            contract.PREDICT_RAW: serve_raw.get_concrete_function(),
            contract.CLASSIFY: classify.get_concrete_function(),
            contract.REGRESS: regress.get_concrete_function(),
            contract.TRANSFORM_FEATURES: transform_features.get_concrete_function(),
        }


def _set_method_names(export_dir: str, method_names: Mapping[str, str]) -> None:
    """Gives signatures TF Serving's method names (Classify, Regress).

    TF 2 saves every signature as `tensorflow/serving/predict`; TF Serving's
    Classify and Regress APIs refuse anything else. Loading ignores the field.
    """
    path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
    saved_model = saved_model_pb2.SavedModel.FromString(tf.io.gfile.GFile(path, 'rb').read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            meta_graph.signature_def[name].method_name = method
    with tf.io.gfile.GFile(path, 'wb') as f:
        f.write(saved_model.SerializeToString())


def warmup_logs(rows=WARMUP_ROWS, model_name: str = '') -> List[prediction_log_pb2.PredictionLog]:
    """One request per client signature, for `rows`.

    TF Serving ignores the model name of a warm-up request (it replays them
    against the version being loaded), so none is needed.
    """
    def spec(signature):
        return model_pb2.ModelSpec(name=model_name, signature_name=signature)

    def examples_input():
        request = classification_pb2.ClassificationRequest()
        request.input.example_list.examples.extend(contract.to_tf_example(row) for row in rows)
        return request.input

    logs = []
    for signature in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES):
        request = predict_pb2.PredictRequest(model_spec=spec(signature))
        for name, array in contract.inputs_for(signature, rows).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    classify = classification_pb2.ClassificationRequest(model_spec=spec(contract.CLASSIFY), input=examples_input())
    logs.append(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify)))
    regress = regression_pb2.RegressionRequest(model_spec=spec(contract.REGRESS), input=examples_input())
    logs.append(prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress)))
    return logs


def write_warmup_requests(model_dir: str, logs=None) -> str:
    """Writes the warm-up file into a SavedModel directory; returns its path."""
    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs if logs is not None else warmup_logs():
            writer.write(log.SerializeToString())
    return path


def export_serving_model(model, tf_transform_output: tft.TFTransformOutput, export_dir: str) -> None:
    module = ExportModule(model, tf_transform_output)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    _set_method_names(export_dir, {name: method for name, method in contract.CLIENT_SIGNATURES.items()
                                   if method != tf.saved_model.PREDICT_METHOD_NAME})
    write_warmup_requests(export_dir)
    with tf.io.gfile.GFile(os.path.join(export_dir, contract.MISSING_VALUES_FILE), 'w') as f:
        f.write(contract.missing_values_json())
