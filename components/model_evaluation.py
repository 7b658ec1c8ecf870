"""The Evaluator's in-process path: TFMA's artifacts, computed from the models' own signatures in large batches.

TFMA scores about 1k examples a second per model here, a small fraction of the model's own rate
(docs/performance.md#tfmas-rate): its extractors and combiners handle each example, for each slice, in
Python. For the configurations it mirrors, this module writes what TFMA's writers write instead:

- the same inputs, in one pass over the eval split (`score`): each model's SavedModel loaded once, its
  signature (`ModelSpec.signature_name`) called on batches of serialized tf.Examples, and its preprocessing
  functions (`preprocessing_function_names`: the Transform graph's `transform_features`), where the label is
  looked up first, as TFMA looks it up (then among the raw features); slices from the raw features, as
  TFMA's slice key extractor finds them when the transformed features do not hold the column, parsed from
  the same batches, only the columns wanted (typed as TFMA's decoder types them), and any other raw column
  the caller asks for (the Evaluator's gated-slice counts);
- the same metrics: the metric keys come from TFMA's own `metric_specs.to_computations` on the EvalConfig,
  their values from components/binary_metrics.py (TFMA's definitions, vectorised over every slice at
  once), the baseline's alongside and the candidate's differences to it, as TFMA adds them;
- the same files (`write`, once the caller has the thresholds): `metrics-*`, `plots-*` and
  `attributions-*` records per slice (converted by TFMA's writer functions), `validations.tfrecord`
  (TFMA's `validate_metrics` per slice, combined by its `CombineValidations`: missing slices, thresholds,
  change thresholds) and `eval_config.json`, so `tfma.load_eval_result` and `tfma.load_validation_result`
  read them as TFMA's.

A configuration it does not mirror raises `NotMirrored` before anything is written (`unmirrored`), and so
does data it does not mirror (a multivalent slice column, labels outside [0, 1], NaN predictions, which
TFMA's histogram cannot bucket); the Evaluator then runs TFMA's executor. Imports no TFX.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import binary_confusion_matrices, metric_specs, metric_types
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tensorflow_model_analysis.slicer import slicer_lib as slicer
from tensorflow_model_analysis.utils import model_util
from tensorflow_model_analysis.writers import eval_config_writer, metrics_plots_and_validations_writer as writer
from tfx_bsl.coders import example_coder

from components import binary_metrics
from foundation import saved_models

# Serialized examples per signature call: large enough that a call's overhead is small against its work.
BATCH = 8192
# Bytes the record reader buffers: fewer, larger reads of the gzipped files.
READ_BUFFER = 4 << 20
# Batches read ahead of the models: what the reader reads while the models load (about 2.5 MB a batch).
READ_AHEAD = 16
# TFMA's output file names (single shard, TFRecord), as its writers name them.
METRICS_FILE = 'metrics-00000-of-00001.tfrecord'
PLOTS_FILE = 'plots-00000-of-00001.tfrecord'
ATTRIBUTIONS_FILE = 'attributions-00000-of-00001.tfrecord'
VALIDATIONS_FILE = 'validations.tfrecord'
EVAL_CONFIG_FILE = 'eval_config.json'

# The metric classes mirrored, with the configs they may have: none (TFMA's defaults), or thresholds for
# ConfusionMatrixAtThresholds.
_NO_CONFIG = ('ExampleCount', 'AUC', 'Precision', 'Recall', 'BinaryAccuracy')
_CONFUSION_MATRICES = 'ConfusionMatrixAtThresholds'
_DEFAULT_THRESHOLD = 0.5
_MODEL_TYPES = ('', tfma.TF_GENERIC, tfma.TF_KERAS)


class NotMirrored(Exception):
    """A configuration or data this path does not compute as TFMA would: TFMA's executor evaluates instead."""


def unmirrored(eval_config: tfma.EvalConfig) -> Optional[str]:
    """Why this path does not mirror TFMA for `eval_config` (with TFMA's defaults applied), or None."""
    specs = list(eval_config.model_specs)
    candidates = [s for s in specs if not s.is_baseline]
    if len(candidates) != 1 or len(specs) > 2:
        return f'{len(specs)} model specs ({len(candidates)} candidates); mirrored: one candidate and a baseline'
    for spec in specs:
        if spec.example_weight_key or spec.example_weight_keys:
            return 'weighted examples'
        if spec.label_keys or spec.prediction_keys or not spec.label_key:
            return 'labels or predictions keyed per output'
        if spec.model_type not in _MODEL_TYPES:
            return f'model type {spec.model_type}'
        if spec.inference_batch_size or spec.padding_options.ByteSize():
            return 'inference options'
    if eval_config.cross_slicing_specs:
        return 'cross-slice specs'
    for spec in eval_config.slicing_specs:
        if spec.feature_values or spec.slice_keys_sql:
            return 'slicing specs by value or SQL'
    options = eval_config.options
    if (options.compute_confidence_intervals.value or options.min_slice_size.value
            or options.disabled_outputs.values or options.HasField('include_default_metrics')):
        return 'options (confidence intervals, minimum slice size, disabled outputs, default metrics)'
    for metrics_spec in eval_config.metrics_specs:
        if (metrics_spec.output_names or metrics_spec.binarize.ByteSize() or metrics_spec.aggregate.ByteSize()
                or metrics_spec.query_key or metrics_spec.example_weights.weighted
                or metrics_spec.cross_slice_thresholds):
            return 'metrics spec with outputs, binarization, aggregation, queries, weights or cross-slice thresholds'
        for metric in metrics_spec.metrics:
            if metric.module or metric.cross_slice_thresholds:
                return f'metric {metric.class_name} from module {metric.module!r} or with cross-slice thresholds'
            config = json.loads(metric.config) if metric.config.strip() else {}
            if metric.class_name in _NO_CONFIG and config:
                return f'{metric.class_name} configured ({metric.config})'
            if metric.class_name == _CONFUSION_MATRICES and set(config) != {'thresholds'}:
                return f'{metric.class_name} configured ({metric.config})'
            if metric.class_name not in _NO_CONFIG + (_CONFUSION_MATRICES,):
                return f'metric class {metric.class_name}'
    try:
        _output_keys(eval_config)
    except NotMirrored as e:
        return str(e)
    return None


def _output_keys(eval_config: tfma.EvalConfig) -> List[metric_types.MetricKey]:
    """The metric keys TFMA outputs for `eval_config` (its computations' keys that are not private)."""
    keys = []
    for computation in metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config):
        for key in computation.keys:
            if key.name.startswith('_') and not key.name.startswith('__'):
                continue
            if (type(key) is not metric_types.MetricKey or key.sub_key or key.aggregation_type
                    or key.output_name or key.example_weighted or key.is_diff):
                raise NotMirrored(f'metric key {key}')
            if key not in keys:
                keys.append(key)
    return keys


def _confusion_thresholds(eval_config: tfma.EvalConfig) -> List[float]:
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            if metric.class_name == _CONFUSION_MATRICES:
                return [float(t) for t in json.loads(metric.config)['thresholds']]
    return []


class _Model:
    """A loaded SavedModel: its prediction and, where the spec names them, its preprocessing functions."""

    def __init__(self, spec: tfma.ModelSpec, loaded):
        self.spec = spec
        self._loaded = loaded  # keeps the signatures' variables alive
        name = spec.signature_name
        if not name:
            if callable(loaded):
                raise NotMirrored(f'model {spec.name!r} is called as a whole (no signature name)')
            name = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        self.predict = self._examples_signature(loaded, name)
        self.preprocessing = [self._examples_signature(loaded, f) for f in spec.preprocessing_function_names]

    @staticmethod
    def _examples_signature(loaded, name: str):
        if name not in loaded.signatures:
            raise NotMirrored(f'no signature {name!r}')
        function = loaded.signatures[name]
        _, inputs = function.structured_input_signature
        if len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string:
            raise NotMirrored(f'signature {name!r} does not take serialized examples alone')
        input_name = next(iter(inputs))
        return lambda serialized: function(**{input_name: serialized})

    def predictions(self, serialized: tf.Tensor) -> np.ndarray:
        outputs = self.predict(serialized)
        key = self.spec.prediction_key
        if isinstance(outputs, dict):
            if not key and len(outputs) == 1:
                key = next(iter(outputs))
            if key not in outputs:
                raise NotMirrored(f'prediction key {key!r} not among the outputs {sorted(outputs)}')
            outputs = outputs[key]
        return _one_per_example(outputs.numpy(), 'prediction')

    def transformed(self, serialized: tf.Tensor) -> Dict[str, Any]:
        features = {}
        for function in self.preprocessing:
            features.update(function(serialized))
        return features


def _one_per_example(values: np.ndarray, what: str) -> np.ndarray:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise NotMirrored(f'{what} of shape {values.shape}; mirrored: one value per example')
    return values


class Column(NamedTuple):
    """A raw feature over the examples: which have a value, each one's first value (None: no example has
    one), and whether any has several."""

    present: np.ndarray
    values: Optional[np.ndarray]
    multivalent: bool = False

    def single(self, what: str) -> 'Column':
        """The column, where no example has several values (NotMirrored otherwise)."""
        if self.multivalent:
            raise NotMirrored(f'{what} has several values in an example')
        return self


# Arrow value types of the decoder TFMA reads with (tfx_bsl, schema inferred), as tf.io.parse_example types.
_PARSED_TYPES = ((pa.types.is_integer, tf.int64), (pa.types.is_floating, tf.float32),
                 (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), tf.string))


# Examples decoded first to learn the raw features' types.
_TYPING_EXAMPLES = 64


class _RawColumns:
    """Raw features of serialized examples, parsed alone with tf.io.parse_example (a small fraction of
    decoding every feature). Each feature's type is the one TFMA's decoder (tfx_bsl's, no schema) infers:
    read from the decoded batches until every feature asked for has shown a value; a later batch where a
    feature has another type is not mirrored (as TFMA's decoder would type it differently per batch)."""

    def __init__(self):
        self.types: Dict[str, tf.DType] = {}
        self._decoder = example_coder.ExamplesToRecordBatchDecoder()

    def _learn_types(self, serialized: tf.Tensor, columns: Sequence[str]) -> None:
        records = serialized.numpy()
        # A few examples show most features' types; the whole batch only for those still unseen.
        for part in (records[:_TYPING_EXAMPLES], records[_TYPING_EXAMPLES:]):
            unseen = [c for c in columns if c not in self.types]
            if len(part) and unseen:
                self._types_in(self._decoder.DecodeBatch(part), unseen)

    def _types_in(self, batch: pa.RecordBatch, columns: Sequence[str]) -> None:
        for column in columns:
            index = batch.schema.get_field_index(column)
            if index < 0:
                continue
            field_type = batch.schema.field(index).type
            if not (pa.types.is_list(field_type) or pa.types.is_large_list(field_type)):
                continue
            value_type = field_type.value_type
            if pa.types.is_null(value_type):
                continue
            for matches, dtype in _PARSED_TYPES:
                if matches(value_type):
                    self.types[column] = dtype
                    break
            else:
                raise NotMirrored(f'feature {column} decoded as {field_type}')

    def parse(self, serialized: tf.Tensor, columns: Sequence[str]) -> Dict[str, Column]:
        rows = int(serialized.shape[0])
        if any(c not in self.types for c in columns):
            self._learn_types(serialized, [c for c in columns if c not in self.types])
        typed = [c for c in columns if c in self.types]
        result = {c: Column(np.zeros(rows, bool), None) for c in columns}
        if not typed:
            return result
        try:
            parsed = tf.io.parse_example(serialized, {c: tf.io.VarLenFeature(self.types[c]) for c in typed})
        except tf.errors.InvalidArgumentError as e:
            raise NotMirrored(f'a feature of another type in another batch ({e.message.splitlines()[0]})')
        for column in typed:
            sparse = parsed[column]
            indices = sparse.indices.numpy()
            example, position = indices[:, 0], indices[:, 1]
            values = sparse.values.numpy()
            if not len(values):
                continue
            first = position == 0
            present = np.zeros(rows, bool)
            present[example[first]] = True
            full = np.full(rows, b'', dtype=object) if values.dtype.kind == 'O' else np.zeros(rows, values.dtype)
            full[example[first]] = values[first]
            result[column] = Column(present, full, bool((position > 0).any()))
        return result


def _joined(parts: List[Column]) -> Column:
    """A column over all batches, values in the type of the batches that have any."""
    present = np.concatenate([p.present for p in parts]) if parts else np.zeros(0, bool)
    typed = [p.values for p in parts if p.values is not None]
    dtypes = {v.dtype for v in typed}
    if len(dtypes) > 1:
        raise NotMirrored(f'a feature decoded as {sorted(map(str, dtypes))} in different batches')
    dtype = typed[0].dtype if typed else np.dtype(np.float64)
    values = [p.values if p.values is not None else (np.full(len(p.present), b'', dtype=object)
                                                     if dtype.kind == 'O' else np.zeros(len(p.present), dtype))
              for p in parts]
    return Column(present, np.concatenate(values), any(p.multivalent for p in parts))


class Scored(NamedTuple):
    """One pass over the eval split: each model's labels and predictions (float64), and the raw columns
    (the slicing specs' and those asked for besides), for the model and slicing specs it was scored with."""

    labels: Dict[str, np.ndarray]
    predictions: Dict[str, np.ndarray]
    columns: Dict[str, Column]
    rows: int
    model_specs: Tuple[bytes, ...]
    slicing_specs: Tuple[bytes, ...]


def _specs(specs) -> Tuple[bytes, ...]:
    return tuple(s.SerializeToString(deterministic=True) for s in specs)


class _Read:
    """What a pass over the eval split gathers: each model's labels and predictions, the raw columns.
    Models with the same SavedModel and the same spec but the name are scored once."""

    def __init__(self, models: Dict[str, _Model], same_as: Dict[str, str], slice_columns: Sequence[str],
                 extra_columns: Sequence[str]):
        self.models, self.same_as = models, same_as
        self.slice_columns = list(slice_columns)
        self.extra_columns = [c for c in extra_columns if c not in self.slice_columns]
        self.labels: Dict[str, List[np.ndarray]] = {name: [] for name in models}
        self.predictions: Dict[str, List[np.ndarray]] = {name: [] for name in models}
        self.raw: Dict[str, List[Column]] = {c: [] for c in self.slice_columns + self.extra_columns}
        self._parser = _RawColumns()

    def add(self, serialized: tf.Tensor) -> None:
        transformed_by = {}
        raw_labels = []
        for name, model in self.models.items():
            if self.same_as[name] != name:
                continue
            transformed = model.transformed(serialized)
            for column in self.slice_columns:
                if column in transformed:
                    raise NotMirrored(f'slice column {column} is a transformed feature')
            transformed_by[name] = transformed
            if model.spec.label_key not in transformed:
                raw_labels.append(model.spec.label_key)
        wanted = list(dict.fromkeys(self.slice_columns + self.extra_columns + raw_labels))
        raw = self._parser.parse(serialized, wanted)
        for name, model in self.models.items():
            if self.same_as[name] != name:
                continue
            key = model.spec.label_key
            if key in transformed_by[name]:
                labels = _one_per_example(transformed_by[name][key].numpy(), 'label')
            else:
                present, labels, _ = raw[key].single(f'label {key}')
                if labels is None or not present.all():
                    raise NotMirrored(f'label {key} missing in an example')
            self.labels[name].append(labels.astype(np.float64))
            self.predictions[name].append(model.predictions(serialized).astype(np.float64))
        for column in self.slice_columns:
            self.raw[column].append(raw[column].single(f'feature {column}'))
        for column in self.extra_columns:
            self.raw[column].append(raw[column])

    def arrays(self):
        labels = {n: np.concatenate(v) if v else np.zeros(0) for n, v in self.labels.items()}
        predictions = {n: np.concatenate(v) if v else np.zeros(0) for n, v in self.predictions.items()}
        for name, same in self.same_as.items():
            labels[name], predictions[name] = labels[same], predictions[same]
        return labels, predictions, {column: _joined(parts) for column, parts in self.raw.items()}


def factorize(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True): the sorted distinct values and each value's index among them.
    Byte strings are hashed by Arrow and only the distinct ones sorted (np.unique sorts every Python object)."""
    if values.dtype.kind != 'O':
        return np.unique(values, return_inverse=True)
    encoded = pa.array(values, pa.binary()).dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(distinct, kind='stable')
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[encoded.indices.to_numpy(zero_copy_only=False)]


def _slice_value(value) -> Any:
    """A raw value as TFMA's slice key holds it: text for bytes, Python int or float."""
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return value.item() if hasattr(value, 'item') else value


def _slices(eval_config: tfma.EvalConfig, raw: Dict[str, Tuple[np.ndarray, np.ndarray]], rows: int
            ) -> List[Tuple[List[Tuple], np.ndarray]]:
    """Per distinct slicing spec: (its slice keys as TFMA's slicer makes them, each example's index among
    them or -1 where the example has no value of a column)."""
    result, seen = [], set()
    for spec in eval_config.slicing_specs:
        columns = tuple(sorted(set(spec.feature_keys)))
        if columns in seen:
            continue
        seen.add(columns)
        present = np.ones(rows, bool)
        for column in columns:
            present &= raw[column][0]
        combined = np.zeros(int(present.sum()), np.int64)
        uniques = []
        for column in columns:
            unique, inverse = factorize(raw[column][1][present])
            uniques.append(unique)
            combined = combined * len(unique) + inverse
        distinct, group = np.unique(combined, return_inverse=True)
        keys = []
        for code in distinct.tolist():
            values = []
            for unique in reversed(uniques):
                values.append(unique[code % len(unique)])
                code //= len(unique)
            keys.append(tuple(sorted(zip(columns, (_slice_value(v) for v in reversed(values))))))
        index = np.full(rows, -1, np.int64)
        index[present] = group
        result.append((keys, index))
    return result


def _metric_values(name: str, keys: Sequence[metric_types.MetricKey], labels: np.ndarray,
                   predictions: np.ndarray, groups: np.ndarray, num_groups: int,
                   confusion_thresholds: Sequence[float]) -> List[Dict[metric_types.MetricKey, Any]]:
    """Every metric of model `name` for each of `num_groups` groups of the examples (group -1: none)."""
    chosen = groups >= 0
    groups, labels, predictions = groups[chosen], labels[chosen], predictions[chosen]
    weights = np.ones(len(labels))
    counts = np.bincount(groups, minlength=num_groups).astype(np.float64)
    names = {k.name for k in keys if k.model_name == name}
    values: Dict[str, Any] = {'example_count': counts}
    if 'auc' in names:
        values['auc'] = binary_metrics.roc_auc(
            binary_metrics.auc_matrices(groups, num_groups, labels, predictions, weights))
    if names & {'precision', 'recall', 'binary_accuracy'}:
        at = binary_metrics.matrices_at(groups, num_groups, labels, predictions, weights, [_DEFAULT_THRESHOLD])
        values.update(precision=binary_metrics.precision(at)[:, 0], recall=binary_metrics.recall(at)[:, 0],
                      binary_accuracy=binary_metrics.binary_accuracy(at)[:, 0])
    if 'confusion_matrix_at_thresholds' in names:
        m = binary_metrics.matrices_at(groups, num_groups, labels, predictions, weights, confusion_thresholds)
        values['confusion_matrix_at_thresholds'] = [
            binary_confusion_matrices.Matrices(list(m.thresholds), m.tp[g].tolist(), m.tn[g].tolist(),
                                               m.fp[g].tolist(), m.fn[g].tolist()) for g in range(num_groups)]
    per_group: List[Dict[metric_types.MetricKey, Any]] = [{} for _ in range(num_groups)]
    for key in keys:
        if key.model_name != name:
            continue
        if key.name not in values:
            raise NotMirrored(f'metric {key.name}')
        for g in range(num_groups):
            value = values[key.name][g]
            per_group[g][key] = value if isinstance(value, binary_confusion_matrices.Matrices) else float(value)
    return per_group


def _with_diffs(metrics: Dict[metric_types.MetricKey, Any], baseline_name: Optional[str]) -> None:
    """The candidate's differences to the baseline, as TFMA's evaluator adds them (numbers and matrices)."""
    if not baseline_name:
        return
    diffs = {}
    for key, value in metrics.items():
        if key.model_name != baseline_name and key.make_baseline_key(baseline_name) in metrics:
            diffs[key.make_diff_key()] = value - metrics[key.make_baseline_key(baseline_name)]
    metrics.update(diffs)


def _write_records(path: str, records) -> None:
    with tf.io.TFRecordWriter(path) as records_file:
        for record in records:
            records_file.write(record.SerializeToString())


def score(eval_config: tfma.EvalConfig, model_paths: Dict[str, str], patterns: Sequence[str],
          extra_columns: Sequence[str] = ()) -> Scored:
    """One pass over the examples `patterns` match: each model (by ModelSpec name; `eval_config` with TFMA's
    defaults applied) loaded once and called on batches of serialized examples, and the raw columns of the
    slicing specs and `extra_columns` parsed from the same batches. Raises NotMirrored, having written
    nothing, where TFMA's executor has to evaluate instead."""
    reason = unmirrored(eval_config)
    if reason:
        raise NotMirrored(reason)
    files = [f for pattern in patterns for f in sorted(tf.io.gfile.glob(pattern))]
    # A fixed read-ahead, no autotuning: with tf.data's autotuning on, deleting the spent iterator took
    # about 2 s in some runs (docs/performance.md#the-evaluator-in-process).
    options = tf.data.Options()
    options.autotune.enabled = False
    batches = iter(tf.data.TFRecordDataset(files, compression_type='GZIP', buffer_size=READ_BUFFER)
                   .batch(BATCH).prefetch(READ_AHEAD).with_options(options))
    # The first batch starts the reader, which reads ahead (in tf.data's threads) while the models load.
    first = next(batches, None)
    loaded, models, same_as, scoring = {}, {}, {}, {}
    for spec in eval_config.model_specs:
        path = model_paths[spec.name]
        if path not in loaded:
            loaded[path] = saved_models.load(path)
        models[spec.name] = _Model(spec, loaded[path])
        # The same SavedModel under the same spec but the name (a baseline that is the candidate) scores once.
        unnamed = tfma.ModelSpec()
        unnamed.CopyFrom(spec)
        unnamed.ClearField('name')
        unnamed.ClearField('is_baseline')
        same_as[spec.name] = scoring.setdefault((path, unnamed.SerializeToString(deterministic=True)), spec.name)
    columns = sorted({c for spec in eval_config.slicing_specs for c in spec.feature_keys})
    read = _Read(models, same_as, columns, extra_columns)
    for serialized in itertools.chain([] if first is None else [first], batches):
        read.add(serialized)
    labels, predictions, raw = read.arrays()
    rows = len(next(iter(labels.values())))
    for name in models:
        if np.isnan(predictions[name]).any():
            raise NotMirrored(f'model {name!r} predicts NaN for {int(np.isnan(predictions[name]).sum())} examples')
        if ((labels[name] < 0) | (labels[name] > 1) | np.isnan(labels[name])).any():
            raise NotMirrored('labels outside [0, 1]')
    return Scored(labels, predictions, raw, rows, _specs(eval_config.model_specs),
                  _specs(eval_config.slicing_specs))


def write(eval_config: tfma.EvalConfig, scored: Scored, model_paths: Dict[str, str], output_uri: str) -> None:
    """TFMA's metrics, plots, attributions, validations and config for `scored` under `eval_config` (the
    config it was scored with, thresholds aside) to `output_uri`."""
    reason = unmirrored(eval_config)
    if reason:
        raise NotMirrored(reason)
    if (_specs(eval_config.model_specs), _specs(eval_config.slicing_specs)) != (scored.model_specs,
                                                                               scored.slicing_specs):
        raise ValueError('the models or slicing specs differ from those the examples were scored with')
    keys = _output_keys(eval_config)
    baseline_spec = model_util.get_baseline_model_spec(eval_config)
    baseline_name = baseline_spec.name if baseline_spec else None
    labels, predictions = scored.labels, scored.predictions
    sliced: Dict[Tuple, Dict[metric_types.MetricKey, Any]] = {}
    confusion_thresholds = _confusion_thresholds(eval_config)
    for slice_keys, groups in _slices(eval_config, scored.columns, scored.rows):
        if not slice_keys:
            continue
        for name in labels:
            for key, values in zip(slice_keys, _metric_values(name, keys, labels[name], predictions[name], groups,
                                                              len(slice_keys), confusion_thresholds)):
                sliced.setdefault(key, {}).update(values)
    for metrics in sliced.values():
        _with_diffs(metrics, baseline_name)

    tf.io.gfile.makedirs(output_uri)
    _write_records(os.path.join(output_uri, METRICS_FILE),
                   (writer.convert_slice_metrics_to_proto((k, m), None) for k, m in sliced.items()))
    _write_records(os.path.join(output_uri, PLOTS_FILE),
                   (metrics_for_slice_pb2.PlotsForSlice(slice_key=slicer.serialize_slice_key(k)) for k in sliced))
    _write_records(os.path.join(output_uri, ATTRIBUTIONS_FILE),
                   (metrics_for_slice_pb2.AttributionsForSlice(slice_key=slicer.serialize_slice_key(k))
                    for k in sliced))
    combine = writer.CombineValidations(eval_config, rubber_stamp=False)
    accumulator = combine.create_accumulator()
    for key, metrics in sliced.items():
        accumulator = combine.add_input(accumulator, metrics_validator.validate_metrics((key, metrics), eval_config))
    _write_records(os.path.join(output_uri, VALIDATIONS_FILE), [combine.extract_output(accumulator)])
    with tf.io.gfile.GFile(os.path.join(output_uri, EVAL_CONFIG_FILE), 'w') as f:
        f.write(eval_config_writer._serialize_eval_run(  # pylint: disable=protected-access
            eval_config, '<user provided PCollection>', '<unknown>', dict(model_paths)))


def evaluate(eval_config: tfma.EvalConfig, model_paths: Dict[str, str], patterns: Sequence[str],
             output_uri: str) -> int:
    """Evaluates the models (by ModelSpec name; `eval_config` with TFMA's defaults applied) on the
    examples `patterns` match and writes TFMA's files to `output_uri`; returns the examples evaluated.
    Raises NotMirrored, having written nothing, where TFMA's executor has to evaluate instead."""
    started = time.perf_counter()
    scored = score(eval_config, model_paths, patterns)
    done = time.perf_counter()
    write(eval_config, scored, model_paths, output_uri)
    logging.info('Evaluated %s examples with %d model(s) in process: scored in %.1f s, metrics and files in '
                 '%.1f s', f'{scored.rows:,}', len(scored.labels), done - started, time.perf_counter() - done)
    return scored.rows
