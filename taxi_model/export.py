"""The exported SavedModel: the Keras model, the Transform graph and the signatures.

The SavedModel embeds the Transform graph, so every signature takes raw
features (names and keys from `taxi_model.contract`):

- `serving_default`: serialized tf.Example (the TFX and TFMA standard);
- `serving_raw`: one named tensor per raw feature, which is what TF Serving
  REST clients send as plain JSON (`{"instances": [{"fare": 9.5, ...}]}`);
- `explain`: raw features in (as `serving_raw`); the probability, the baseline
  probability, both as log-odds, and one integrated-gradients attribution (in
  log-odds) per raw feature out;
- `classification` / `regression`: serialized tf.Example in, TF Serving's
  Classify (`classes`, `scores`) and Regress (`outputs`) contract out, so the
  `:classify` and `:regress` APIs work; their method names are set to TF
  Serving's, which `tf.saved_model.save` cannot do itself;
- `transform_features`: serialized tf.Example with the label column, returning
  transformed features and label, for TFMA's preprocessing step.

The predict signatures and `explain` also flag outliers (`contract.FLAG_OUTPUTS`):
the outlier score and its threshold come from Transform's analysis of the
training split; the domains come from the curated schema the Trainer was given.

Next to the model, under `assets.extra/`:
- `tf_serving_warmup_requests`: one request per client signature, which TF
  Serving (and the embedded server) replay before the version takes traffic;
- `missing_values.json`: how `serving_raw` marks a missing value, so a server's
  request log can leave such values out without knowing this model;
- `explanation.json`: how attributions are computed, the baseline input in
  raw and transformed terms, the baseline probability and the outlier threshold;
- `calibration.json` (when the Trainer passes the eval split): an isotonic calibration of the
  probability fitted on the eval split, its reliability, the eval label rate, the reference values
  of estimated and realised accuracy and AUC, and the mean |attribution| per feature on an eval
  sample (`foundation/calibration.py`), which the monitor judges unlabelled traffic by.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
# What `keras.Model.save(save_traces=False)` uses; tf.saved_model.save has no such argument.
from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import (classification_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from foundation import calibration as model_calibration
from foundation import model_files
from taxi_model import contract
from taxi_model.features import FEATURES, Encoding, Feature, RawType
from taxi_model.model import ENCODER, HEAD, LOGIT, model_inputs, representation_keys
from taxi_model.preprocessing import OUTLIER_SHARE, densify

# Integrated gradients: points on the straight path from the baseline to the
# input, integrated with the trapezoidal rule. The completeness gap (sum of
# attributions vs log-odds - baseline log-odds) shrinks with the steps; 64
# keep it within COMPLETENESS_TOLERANCE on the taxi model (tests hold it to
# that), and keep a single-example explain close to a predict's cost
# (docs/performance.md#explanations).
IG_STEPS = 64
COMPLETENESS_TOLERANCE = 0.05
# The path's points, and the trapezoidal rule's weight of each.
_ALPHAS = np.linspace(0.0, 1.0, IG_STEPS + 1, dtype=np.float32)
_WEIGHTS = np.concatenate([[0.5], np.ones(IG_STEPS - 1), [0.5]]).astype(np.float32) / IG_STEPS
# The calibration the model carries: eval rows explained for the attribution reference (what it costs the
# Trainer: docs/monitoring.md#before-labels-arrive-estimated-performance), and the rows per call (an
# integrated-gradients call holds IG_STEPS + 1 copies of its batch's representations).
ATTRIBUTION_SAMPLE = 500
EXPLAIN_CHUNK = 250
PREDICT_CHUNK = 8192

# TF Serving replays the PredictionLog records in this file at load time.
WARMUP_FILE = model_files.WARMUP_FILE

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

# A domain check: ('range', min or None, max or None) or ('values', allowed strings).
Domain = Tuple


def schema_domains(schema_path: Optional[str]) -> Dict[str, Domain]:
    """The curated schema's domain of each model feature that has one."""
    if not schema_path:
        return {}
    with tf.io.gfile.GFile(schema_path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    shared = {d.name: d for d in schema.string_domain}
    domains = {}
    for feature in schema.feature:
        kind = feature.WhichOneof('domain_info')
        if kind in ('int_domain', 'float_domain'):
            d = getattr(feature, kind)
            domains[feature.name] = ('range', d.min if d.HasField('min') else None, d.max if d.HasField('max') else None)
        elif kind == 'string_domain':
            domains[feature.name] = ('values', tuple(feature.string_domain.value))
        elif kind == 'domain' and feature.domain in shared:
            domains[feature.name] = ('values', tuple(shared[feature.domain].value))
    return {f.name: domains[f.name] for f in FEATURES if f.name in domains}


def _values_and_presence(x, missing_value) -> Tuple[tf.Tensor, tf.Tensor]:
    """A raw feature as parsed ([batch, 0 or 1] sparse, or dense): [batch] values and [batch] presence."""
    if isinstance(x, tf.SparseTensor):
        present = tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.bool), x.dense_shape)
        return densify(x, missing_value), densify(present, False)
    values = tf.reshape(x, [-1])
    return values, tf.ones_like(values, tf.bool)


def _feature_sums(keys: Sequence[str], widths: Sequence[int]) -> np.ndarray:
    """[sum(widths), len(FEATURES)]: 1 where a column of the representations side by side (`keys` of
    `widths`) belongs to a feature's representations, so a product with it sums them per feature."""
    owner = {key: i for i, f in enumerate(FEATURES) for key in representation_keys(f)}
    sums = np.zeros([sum(widths), len(FEATURES)], np.float32)
    start = 0
    for key, width in zip(keys, widths):
        if key in owner:
            sums[start:start + width, owner[key]] = 1.0
        start += width
    return sums


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
    return tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), tf.gather(values, rows[:, 0]),
                           tf.stack([tf.shape(values, out_type=tf.int64)[0], 1]))


class ExportModule(tf.Module):
    """The model plus the Transform layer, with every signature of the contract."""

    def __init__(self, model, tf_transform_output: tft.TFTransformOutput, baseline: Mapping[str, np.ndarray],
                 schema_path: Optional[str] = None):
        super().__init__()
        self.model = model
        self.encoder, self.head = model.get_layer(ENCODER), model.get_layer(HEAD)
        self.logit = keras.Model(inputs=self.head.input, outputs=self.head.get_layer(LOGIT).output)
        # Tracked as an attribute so the Transform graph is saved with the model.
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._feature_spec = tf_transform_output.raw_feature_spec()
        # Serving parses only the model's features: columns the model ignores
        # (and the label's source) must not be required of a client.
        self._serving_spec = {f.name: self._feature_spec[f.name] for f in FEATURES}
        self.domains = schema_domains(schema_path)
        # An id past the vocabulary Transform kept is an out-of-vocabulary bucket.
        self._vocabularies = {f.name: tf_transform_output.vocabulary_by_name(f.name)
                              for f in FEATURES if f.encoding is Encoding.VOCABULARY}
        # The explanation baseline: each encoder output's training mean, [1, width].
        self._baseline = {key: tf.constant(value) for key, value in baseline.items()}

    def _flags(self, raw_features, transformed) -> Dict[str, tf.Tensor]:
        """`contract.FLAG_OUTPUTS` for a batch: the outlier score against its
        calibrated threshold, and the features outside their domain or vocabulary."""
        flagged = []
        for f in FEATURES:
            fill = '' if f.raw_type is RawType.BYTES else tf.constant(0, tf.as_dtype(f.raw_type.tf_dtype))
            values, present = _values_and_presence(raw_features[f.name], fill)
            outside = tf.zeros_like(present)
            domain = self.domains.get(f.name)
            if domain and domain[0] == 'range':
                _, low, high = domain
                if low is not None:
                    outside |= values < tf.cast(low, values.dtype)
                if high is not None:
                    outside |= values > tf.cast(high, values.dtype)
            elif domain:
                allowed = tf.constant(list(domain[1]), tf.string)
                outside |= tf.logical_not(tf.reduce_any(tf.equal(values[:, None], allowed[None, :]), axis=1))
            if f.name in self._vocabularies:
                outside |= transformed[f.transformed_name] >= len(self._vocabularies[f.name])
            flagged.append(present & outside)
        flagged = tf.stack(flagged, axis=1)
        # "name," for each flagged feature, joined, less the last comma: what a ragged mask and a join
        # with separators gives, in a few operations rather than a ragged tensor's many.
        named = tf.where(flagged, tf.constant([[f'{f.name},' for f in FEATURES]]), '')
        score = transformed[contract.OUTLIER_SCORE]
        return {contract.OUTLIER_SCORE: score,
                contract.IS_OUTLIER: (score > transformed[contract.OUTLIER_THRESHOLD]) | tf.reduce_any(flagged, axis=1),
                contract.FLAGGED_FEATURES: tf.strings.regex_replace(tf.strings.reduce_join(named, axis=1), ',$', '')}

    def _parsed_specs(self) -> Dict[str, tf.TypeSpec]:
        """The serving features as `tf.io.parse_example` gives them, and as `_as_parsed` makes them of a
        raw request: what the shared functions below are traced for, once."""
        return {name: tf.TensorSpec([None, *spec.shape], spec.dtype) if isinstance(spec, tf.io.FixedLenFeature)
                else tf.SparseTensorSpec([None, None], spec.dtype) for name, spec in self._serving_spec.items()}

    def _predict(self, raw_features, transform) -> Dict[str, tf.Tensor]:
        transformed = transform(raw_features)
        return {contract.PROBABILITIES: self.model(model_inputs(transformed)),
                **self._flags(raw_features, transformed)}

    def _explain(self, raw_features, transform) -> Dict[str, tf.Tensor]:
        """Integrated gradients over the encoder's representations (one-hot and
        embedding of a categorical feature, the scaled value of a numeric one and its
        fixed-bin one-hot where it has steps):
        the head is differentiable there, ids are not. Each representation's
        attribution is summed back to the raw feature it came from."""
        transformed = transform(raw_features)
        outputs = self._integrated_gradients(model_inputs(transformed))
        outputs.update(self._flags(raw_features, transformed))
        return outputs

    def _integrated_gradients(self, inputs) -> Dict[str, tf.Tensor]:
        """`_explain`'s outputs but the flags, from the model's inputs (transformed features):
        what the eval split, already transformed, is explained by at training time.

        The trapezoidal average is one matrix product per representation, and the sums back to raw
        features one product for them all, side by side: a smaller graph to trace, save, load and run
        first than a chain of operations per representation and feature
        (docs/performance.md#the-explanations-smaller-graph)."""
        representations = self.encoder(inputs)
        keys = list(representations)
        # The widths are static: an empty batch cannot infer them.
        widths = [representations[key].shape[-1] for key in keys]
        difference = {key: representations[key] - self._baseline[key] for key in keys}
        # [steps + 1, batch, width] -> [(steps + 1) * batch, width]: one head call for the whole path.
        # Each representation keeps a path of its own: split from one wide path, and joined again for
        # its gradient, the copies cost more than the head's pass at a batch of 100.
        path = {key: tf.reshape(self._baseline[key][None] + _ALPHAS[:, None, None] * difference[key][None],
                                [-1, width]) for key, width in zip(keys, widths)}
        with tf.GradientTape() as tape:
            tape.watch(path)
            log_odds = self.logit(path)
        gradients = tape.gradient(log_odds, path)
        batch = tf.shape(representations[keys[0]])[0]
        # The trapezoidal average over the steps, [1, steps + 1] x [steps + 1, batch * width], then the
        # representations side by side, small now, summed back to the raw feature each came from.
        average = tf.concat([tf.reshape(tf.matmul(_WEIGHTS[None], tf.reshape(gradients[key], [IG_STEPS + 1, -1])),
                                        [batch, width]) for key, width in zip(keys, widths)], axis=1)
        attributions = tf.matmul(tf.concat([difference[key] for key in keys], axis=1) * average,
                                 _feature_sums(keys, widths))
        log_odds = tf.reshape(self.logit(representations), [-1])
        baseline_log_odds = tf.fill([batch], tf.reshape(self.logit(self._baseline), []))
        outputs = {contract.PROBABILITIES: tf.reshape(tf.sigmoid(log_odds), [-1, 1]),
                   contract.BASELINE_PROBABILITY: tf.sigmoid(baseline_log_odds),
                   contract.LOG_ODDS: log_odds, contract.BASELINE_LOG_ODDS: baseline_log_odds}
        for i, f in enumerate(FEATURES):
            outputs[contract.attribution_key(f.name)] = attributions[:, i]
        return outputs

    def _raw_parsed(self, features):
        return {name: _as_parsed(values, self._feature_spec[name]) for name, values in features.items()}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        examples = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)
        # Traced as written, without autograph's rewrite: their Python loops and branches run over
        # features, not tensors (a tensor in a Python `if` fails the trace), and the rewrite only costs
        # time (docs/decisions.md#a-lean-savedmodel).

        # Parsed examples and raw requests meet in the same parsed form, so the Transform layer and the
        # model are traced once for all the signatures that serve them, not once per signature: the
        # export and every load of the model take less time (docs/performance.md#shared-functions-in-the-export).
        # (Locals, not attributes: the module would save them as functions of their own.)
        parsed = self._parsed_specs()
        transform = tf.function(self.tft_layer, input_signature=[parsed], autograph=False)
        predict = tf.function(lambda features: self._predict(features, transform), input_signature=[parsed],
                              autograph=False)

        @tf.function(input_signature=[examples], autograph=False)
        def serve_tf_examples(serialized):
            return predict(tf.io.parse_example(serialized, self._serving_spec))

        @tf.function(input_signature=[_raw_input_specs()], autograph=False)
        def serve_raw(features):
            return predict(self._raw_parsed(features))

        @tf.function(input_signature=[_raw_input_specs()], autograph=False)
        def explain(features):
            return self._explain(self._raw_parsed(features), transform)

        @tf.function(input_signature=[examples], autograph=False)
        def transform_features(serialized):
            return self.tft_layer(tf.io.parse_example(serialized, self._feature_spec))

        inputs = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_API_INPUT)

        @tf.function(input_signature=[inputs], autograph=False)
        def classify(serialized):
            positive = serve_tf_examples(serialized)[contract.PROBABILITIES]
            batch = tf.shape(positive)[0]
            return {tf.saved_model.CLASSIFY_OUTPUT_CLASSES: tf.tile(tf.constant([contract.CLASS_LABELS]), [batch, 1]),
                    tf.saved_model.CLASSIFY_OUTPUT_SCORES: tf.concat([1.0 - positive, positive], axis=1)}

        @tf.function(input_signature=[inputs], autograph=False)
        def regress(serialized):
            return {tf.saved_model.REGRESS_OUTPUTS: tf.reshape(serve_tf_examples(serialized)[contract.PROBABILITIES],
                                                               [-1])}

        return {
            contract.PREDICT_EXAMPLES: serve_tf_examples.get_concrete_function(),
            contract.PREDICT_RAW: serve_raw.get_concrete_function(),
            contract.EXPLAIN: explain.get_concrete_function(),
            contract.CLASSIFY: classify.get_concrete_function(),
            contract.REGRESS: regress.get_concrete_function(),
            contract.TRANSFORM_FEATURES: transform_features.get_concrete_function(),
        }

    def _describe_baseline(self, f: Feature) -> Dict:
        """A feature's baseline in the terms of its raw values."""
        keys = representation_keys(f)
        if not f.is_categorical:
            return {'mean_z_score': float(self._baseline[keys[0]].numpy()[0, 0])}
        frequencies = self._baseline[keys[0]].numpy()[0]
        top = int(np.argmax(frequencies))
        value = top
        if f.name in self._vocabularies:
            vocabulary = self._vocabularies[f.name]
            value = vocabulary[top].decode() if top < len(vocabulary) else '(out of vocabulary)'
        elif f.encoding is Encoding.BUCKETIZED:
            value = f'quantile bucket {top} of {f.buckets}'
        return {'most_frequent': value, 'share': round(float(frequencies[top]), 4)}

    def explanation(self) -> Dict:
        """What `contract.EXPLANATION_FILE` says: the method, the baseline and the outlier threshold."""
        raw = self._raw_parsed({k: tf.constant(v) for k, v in contract.raw_inputs(WARMUP_ROWS[:1]).items()})
        transformed = self.tft_layer(raw)
        baseline_log_odds = float(tf.reshape(self.logit(self._baseline), []))
        return {
            'method': 'integrated gradients of the log-odds over the model inputs (one-hot and embedding of a '
                      'categorical feature, the scaled value of a numeric one and its fixed-bin one-hot where it has '
                      'steps), summed per raw feature',
            'steps': IG_STEPS, 'integration': 'trapezoidal', 'unit': 'log-odds',
            'completeness': f'sum of attributions = {contract.LOG_ODDS} - {contract.BASELINE_LOG_ODDS}, '
                            f'within {COMPLETENESS_TOLERANCE}',
            'baseline': {'meaning': 'the average training example: the training mean of every model input '
                                    '(category frequencies for a one-hot, the mean embedding, the mean z-score)',
                         'features': {f.name: self._describe_baseline(f) for f in FEATURES}},
            'baseline_log_odds': baseline_log_odds,
            'baseline_probability': float(1 / (1 + np.exp(-baseline_log_odds))),
            'outliers': {
                'score': 'mean squared z-score of the numeric features against the training split',
                'threshold': float(transformed[contract.OUTLIER_THRESHOLD][0]),
                'calibrated_share_of_training_examples': OUTLIER_SHARE,
                'domains_from': 'the curated schema the model was trained with',
                'domains': {name: list(d[1:]) for name, d in self.domains.items()}},
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
    for signature in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES, contract.EXPLAIN):
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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The eval split as the model takes it, for the calibration the model carries."""

    # Model inputs (`taxi_model.model.model_inputs` of transformed features), [n, 1] each.
    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray
    # What reading them took, counted in the calibration's cost.
    seconds: float = 0.0


def _in_chunks(function, inputs: Mapping[str, np.ndarray], size: int) -> Dict[str, np.ndarray]:
    """`function` over `inputs` in chunks of `size` rows (an integrated-gradients path is STEPS + 1
    times its batch), outputs concatenated."""
    rows = len(next(iter(inputs.values())))
    parts = [function({k: tf.constant(v[i:i + size]) for k, v in inputs.items()}) for i in range(0, rows, size)]
    return {key: np.concatenate([np.reshape(p[key].numpy(), [-1]) for p in parts]) for key in parts[0]}


def calibration(module: ExportModule, evaluation: Evaluation, seed: int = 0) -> model_calibration.Calibration:
    """The calibration of the model's probability on the eval split, with the mean |attribution| per
    feature of `explain`'s computation on a sample of it (ATTRIBUTION_SAMPLE rows)."""
    started = time.perf_counter()
    labels = np.reshape(evaluation.labels, [-1]).astype(int)
    scores = _in_chunks(lambda x: {contract.PROBABILITIES: module.model(x, training=False)},
                        evaluation.inputs, PREDICT_CHUNK)[contract.PROBABILITIES]
    sample = np.random.default_rng(seed).permutation(len(labels))[:ATTRIBUTION_SAMPLE]
    # Eagerly: tracing the computation would cost more than running it once.
    explained = _in_chunks(module._integrated_gradients,
                           {k: np.asarray(v)[sample] for k, v in evaluation.inputs.items()}, EXPLAIN_CHUNK)
    outputs = {f.name: contract.attribution_key(f.name) for f in FEATURES}
    attributions = model_calibration.AttributionReference(
        signature=contract.EXPLAIN, outputs=outputs,
        mean_abs={name: float(np.abs(explained[key]).mean()) for name, key in outputs.items()},
        examples=len(sample))
    fitted = model_calibration.fit(scores, labels, attributions=attributions)
    return dataclasses.replace(fitted, seconds=round(evaluation.seconds + time.perf_counter() - started, 3))


def _write(path: str, text: str) -> None:
    """Through a temporary name and a rename (tf.io.gfile's, as the export may be on GCS): a reader
    finds the whole file or none."""
    temporary = f'{path}.partial'
    with tf.io.gfile.GFile(temporary, 'w') as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def export_serving_model(model, tf_transform_output: tft.TFTransformOutput, export_dir: str,
                         baseline: Mapping[str, np.ndarray], schema_path: Optional[str] = None,
                         evaluation: Optional[Evaluation] = None) -> Optional[model_calibration.Calibration]:
    """Saves the SavedModel with every signature of the contract, and its assets.extra/.

    `baseline` is each encoder output's training mean (`taxi_model.model.mean_representations`);
    `schema_path` the curated schema the model was trained with: its domains
    become the outlier flags' domain checks. With `evaluation` (the eval split), the model also
    carries its calibration (`model_files.CALIBRATION_FILE`), which is returned.
    """
    module = ExportModule(model, tf_transform_output, baseline, schema_path)
    # Without Keras's own traces of every layer: every reader of this model (TF Serving, TFMA, our
    # server) calls the signatures, and the traces made saving and loading much slower, which every
    # version load, Evaluator run and report pays (docs/performance.md#savings-in-a-fresh-run).
    with keras_option_scope(save_traces=False):
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    _set_method_names(export_dir, {name: method for name, method in contract.CLIENT_SIGNATURES.items()
                                   if method != tf.saved_model.PREDICT_METHOD_NAME})
    write_warmup_requests(export_dir)
    with tf.io.gfile.GFile(os.path.join(export_dir, contract.MISSING_VALUES_FILE), 'w') as f:
        f.write(contract.missing_values_json())
    with tf.io.gfile.GFile(os.path.join(export_dir, contract.EXPLANATION_FILE), 'w') as f:
        f.write(json.dumps(module.explanation(), indent=2, sort_keys=True))
    if evaluation is None:
        return None
    calibrated = calibration(module, evaluation)
    _write(os.path.join(export_dir, model_files.CALIBRATION_FILE), calibrated.to_json())
    return calibrated
