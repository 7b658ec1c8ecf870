"""Evaluator whose gates are float exec properties, and whose baseline may be empty.

Two things TFX's Evaluator leaves to the pipeline author:
- The thresholds live inside the EvalConfig proto, where KubeflowV2DagRunner
  cannot put a runtime parameter. Here `min_auc`, `min_accuracy` and
  `max_auc_drop` (the overall slice), and `min_slice_auc`, `max_slice_auc_gap`,
  `max_slice_auc_drop` and `min_slice_class_examples` (the slices the model
  declares gated: components/slice_gates.py) are exec properties (Kubeflow
  Pipelines parameters), and the executor adds the gates they define to the
  EvalConfig it is given. Which slices are judged depends on the data: the
  executor counts each gated slice's examples of each class in what it
  evaluates, and gives TFMA thresholds only for slices with enough of both.
  One gate is not TFMA's: the gap between a slice's AUC and the overall one.
  TFMA 0.47's CrossSliceMetricThreshold cannot pass (its validator files a
  checked cross-slice spec under `slicing_spec`, so every cross-slice
  threshold comes back in `missing_cross_slices` and fails validation:
  metrics_validator._hashed_slicing_details), so the executor checks the gap on
  TFMA's metrics itself, and a gap too wide takes the blessing away.
- The first run has nothing pushed yet, so the baseline is an empty Model
  artifact; the executor drops it, and TFMA validates absolute thresholds only
  (TFX's own rubber stamp when there is no baseline).

Two paths evaluate, and the evaluation records which (`evaluator_path`, and
`evaluator_path_reason` when TFMA's ran):
- in process (components/model_evaluation.py), wherever it mirrors TFMA: the
  whole eval split read once and scored by the models' own signatures in large
  batches, the gated slices counted from the same pass, TFMA's metrics computed
  vectorised and written as TFMA writes them, the blessing as TFX's executor
  writes it; tests compare it with TFMA's executor;
- TFMA's executor (TFX's Evaluator on Beam) for anything else: Beam on a remote
  runner, `evaluation_engine` 'tfma', or an EvalConfig or data the in-process
  path does not mirror (model_evaluation.unmirrored, NotMirrored). TFMA scores a
  small fraction of the model's own rate (docs/performance.md#tfmas-rate), so on
  this path a large eval split is evaluated on an evenly spaced sample of at
  most `max_eval_examples`: candidate and baseline on the same examples.
The split's size and the examples evaluated are recorded on the evaluation
(`eval_examples`, `evaluated_examples`), so nobody mistakes the one for the other.

It also writes the candidate's overall metrics onto the evaluation artifact
(`metric_<name>` custom properties), so ML Metadata answers "how good was
each run's model" without TFMA loading the output (seconds of imports), and
Kubeflow's UI shows them on the artifact. Every gate as applied (measured,
bound, passed, margin, read back from TFMA's validation result) and the gated
slices' counts go on the evaluation too (`gates`, `gated_slices`, JSON), and a
refused model's blessing says why in one line (`reason`), naming the slice.
"""

import copy
import dataclasses
import logging
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, json_utils, path_utils

from components import beam_runner, model_evaluation, record_files, slice_gates
from components.artifact_contents import OVERALL, metrics_by_slice
from components.baseline_model import has_model
from components.record_files import batched, record_count
from components.slice_gates import (MAX_AUC_DROP, MAX_SLICE_AUC_DROP, MAX_SLICE_AUC_GAP, MIN_ACCURACY, MIN_AUC,
                                    MIN_SLICE_AUC, MIN_SLICE_CLASS_EXAMPLES, Gate, SliceCount, SliceThresholds)
from taxi_model import features as features_lib

MAX_EVAL_EXAMPLES = 'max_eval_examples'
# Which executor evaluates: AUTO (the in-process path where it mirrors TFMA, else TFMA's) or TFMA (always TFMA's).
EVALUATION_ENGINE, AUTO, TFMA, IN_PROCESS = 'evaluation_engine', 'auto', 'tfma', 'in_process'
# Recorded on the evaluation: which path ran (IN_PROCESS or TFMA), and why TFMA's when it was.
PATH_PROPERTY, PATH_REASON_PROPERTY = 'evaluator_path', 'evaluator_path_reason'
EVAL_SPLIT = 'eval'
METRIC_PREFIX = 'metric_'
FloatParameter = Union[float, data_types.RuntimeParameter]


def gated(eval_config: tfma.EvalConfig, min_auc: float, min_accuracy: float, max_auc_drop: float,
          slices: Sequence[SliceCount] = (), slice_thresholds: SliceThresholds = slice_gates.DEFAULTS
          ) -> tfma.EvalConfig:
    """`eval_config` plus the blessing gates TFMA checks: AUC and accuracy floors on the overall slice, and how
    far AUC may fall below the baseline's; and for each judged slice of `slices` (components/slice_gates.py)
    an AUC floor and how far its AUC may fall below the baseline's on the same slice. Slices not judged get
    no threshold. (The gap below overall is checked by the executor: `refused_by_gap`.)"""
    def overall(threshold):
        return tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)

    def no_drop_beyond(drop):
        # Ignored when there is no baseline (the first push).
        return tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -drop})

    auc = tfma.MetricConfig(class_name='AUC', per_slice_thresholds=[overall(tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_auc}),
        change_threshold=no_drop_beyond(max_auc_drop)))])
    for found in slices:
        if found.judged:
            auc.per_slice_thresholds.append(tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec(feature_values={found.column: found.value})],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={'value': slice_thresholds.min_auc}),
                    change_threshold=no_drop_beyond(slice_thresholds.max_auc_drop))))
    gates = tfma.MetricsSpec(metrics=[auc, tfma.MetricConfig(
        class_name='BinaryAccuracy', per_slice_thresholds=[overall(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_accuracy})))])])
    result = tfma.EvalConfig()
    result.CopyFrom(eval_config)
    result.metrics_specs.append(gates)
    return result


def slice_counts(examples, columns: Sequence[str] = features_lib.GATED_SLICE_COLUMNS) -> List[SliceCount]:
    """Each value of `columns` in the eval split of `examples`, with its examples of each class: the label as
    Transform derives it (taxi_model.preprocessing.label), from the raw columns TFMA slices on."""
    if not columns:
        return []
    label_columns = (features_lib.LABEL.tips_column, features_lib.LABEL.fare_column)
    spec = {name: tf.io.VarLenFeature(tf.float32) for name in label_columns}
    spec.update({column: tf.io.VarLenFeature(tf.as_dtype(features_lib.raw_columns()[column].tf_dtype))
                 for column in columns})
    parts: Dict[str, List[Tuple[np.ndarray, np.ndarray]]] = {column: [] for column in columns}
    labels = []
    files = tf.io.gfile.glob(os.path.join(examples.uri, f'Split-{EVAL_SPLIT}', '*'))
    for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        labels.append(_label(parsed))
        for column in columns:
            # Each row's first value (TFMA slices a missing value nowhere, so a row without one is skipped).
            sparse = parsed[column]
            first = sparse.indices[:, 1].numpy() == 0
            parts[column].append((sparse.indices[:, 0].numpy()[first], sparse.values.numpy()[first]))
    offsets = np.cumsum([0] + [len(b) for b in labels])
    values = {}
    for column in columns:
        rows = np.concatenate([r + offsets[i] for i, (r, _) in enumerate(parts[column])] or [np.zeros(0, np.int64)])
        values[column] = (rows, np.concatenate([v for _, v in parts[column]] or [np.zeros(0)]))
    return count_slices(np.concatenate(labels) if labels else np.zeros(0, np.int64), values)


def _label(inputs) -> np.ndarray:
    from taxi_model.preprocessing import label  # TensorFlow Transform: only where counting happens
    return label(inputs).numpy()


def count_slices(labels: np.ndarray, columns: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> List[SliceCount]:
    """Each value of each column, with its examples of each class: `labels` (1 positive) per example, and per
    column (the examples that have a value, their first values)."""
    counts: Dict[tuple, List[int]] = {}
    for column, (rows, raw) in columns.items():
        if not len(rows):
            continue
        unique, inverse = model_evaluation.factorize(raw)
        positive = labels[rows].astype(bool)
        positives = np.bincount(inverse, weights=positive, minlength=len(unique))
        examples = np.bincount(inverse, minlength=len(unique))
        for value, p, n in zip(unique.tolist(), positives.tolist(), examples.tolist()):
            text = value.decode() if isinstance(value, bytes) else str(raw.dtype.type(value))
            found = counts.setdefault((column, text), [0, 0])
            found[0] += int(p)
            found[1] += int(n - p)
    return [SliceCount(column, value, positives, negatives) for (column, value), (positives, negatives)
            in counts.items()]


def scored_slice_counts(columns: Dict[str, model_evaluation.Column],
                        gated_columns: Sequence[str] = features_lib.GATED_SLICE_COLUMNS) -> List[SliceCount]:
    """`slice_counts` from the raw columns the in-process path parsed while scoring (model_evaluation.score:
    the gated columns and the label's raw columns), without reading the split again."""
    if not gated_columns:
        return []
    dense = {}
    for name, missing in ((features_lib.LABEL.tips_column, 0.0), (features_lib.LABEL.fare_column, float('nan'))):
        present, values, multivalent = columns[name]
        if multivalent or (present.any() and values.dtype != np.float32):
            raise model_evaluation.NotMirrored(f'{name} has several values in an example, or is not a float')
        dense[name] = tf.constant(np.where(present, values, np.float32(missing)).astype(np.float32)[:, None])
    labels = _label(dense)
    return count_slices(labels, {column: (np.flatnonzero(columns[column].present),
                                          columns[column].values[columns[column].present])
                                 for column in gated_columns})


def read_gates(evaluation_uri: str, min_auc: float, min_accuracy: float, max_auc_drop: float,
               slices: Sequence[SliceCount], slice_thresholds: SliceThresholds) -> Tuple[List[Gate], List[str]]:
    """(every gate as applied, TFMA failures no gate accounts for). Passed or not is TFMA's verdict (its
    validation result), except the gap below overall, which TFMA 0.47 cannot check (module docstring): that
    one is checked here, on TFMA's metrics. The measured values are the candidate's metrics, or the failure's
    own value."""
    validation = tfma.load_validation_result(evaluation_uri)
    failed, unexplained = {}, []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = _failure_key(per_slice, failure)
            if key is None:
                unexplained.append(f'{_slice_of(per_slice)}: {failure.metric_key.name} '
                                   f'{failure.message.strip() or "failed its threshold"}')
            else:
                failed[key] = failure.metric_value.double_value.value
    unexplained += [f'{_spec_label(spec)}: no metrics for a gated slice' for spec in validation.missing_slices]
    metrics = metrics_by_slice(evaluation_uri)
    candidate, baseline = metrics.get(OVERALL, ({}, {}))
    has_baseline = 'auc' in baseline

    def gate(name, where, measured, bound, base=None, applied=True):
        key = (name, where)
        if key in failed:
            return Gate(name, where, failed[key], bound, False, base)
        return Gate(name, where, measured, bound, True if applied else None, base)

    def change(values, base):
        return values['auc'] - base['auc'] if 'auc' in values and 'auc' in base else None
    gates = [gate(MIN_AUC, OVERALL, candidate.get('auc'), min_auc),
             gate(MIN_ACCURACY, OVERALL, candidate.get('binary_accuracy'), min_accuracy),
             gate(MAX_AUC_DROP, OVERALL, change(candidate, baseline), -max_auc_drop, baseline.get('auc'),
                  has_baseline)]
    for found in slices:
        if not found.judged:
            continue
        values, base = metrics.get(found.label, ({}, {}))
        gap = candidate['auc'] - values['auc'] if 'auc' in candidate and 'auc' in values else None
        gates += [gate(MIN_SLICE_AUC, found.label, values.get('auc'), slice_thresholds.min_auc),
                  Gate(MAX_SLICE_AUC_GAP, found.label, gap, slice_thresholds.max_auc_gap,
                       gap is not None and gap <= slice_thresholds.max_auc_gap),
                  gate(MAX_SLICE_AUC_DROP, found.label, change(values, base), -slice_thresholds.max_auc_drop,
                       base.get('auc'), has_baseline)]
    return gates, unexplained


def _failure_key(per_slice, failure) -> Optional[Tuple[str, str]]:
    """(gate, slice label) of a TFMA failure on one of the gates `gated` sets; None for any other."""
    name, is_diff = failure.metric_key.name, failure.metric_key.is_diff
    if per_slice.HasField('cross_slice_key'):
        return None
    where = _slice_label(per_slice.slice_key)
    if where == OVERALL:
        return {('auc', False): (MIN_AUC, OVERALL), ('auc', True): (MAX_AUC_DROP, OVERALL),
                ('binary_accuracy', False): (MIN_ACCURACY, OVERALL)}.get((name, is_diff))
    if name == 'auc':
        return (MAX_SLICE_AUC_DROP if is_diff else MIN_SLICE_AUC), where
    return None


def _slice_label(slice_key) -> str:
    keys = slice_key.single_slice_keys
    if not keys:
        return OVERALL
    return ', '.join(slice_gates.slice_label(k.column, _key_value(k)) for k in keys)


def _key_value(key) -> str:
    value = getattr(key, key.WhichOneof('kind'))
    return value.decode() if isinstance(value, bytes) else str(value)


def _slice_of(per_slice) -> str:
    if per_slice.HasField('cross_slice_key'):
        cross = per_slice.cross_slice_key
        return f'{_slice_label(cross.comparison_slice_key)} vs {_slice_label(cross.baseline_slice_key)}'
    return _slice_label(per_slice.slice_key)


def _spec_label(spec) -> str:
    return ', '.join(slice_gates.slice_label(k, v) for k, v in sorted(spec.feature_values.items())) or OVERALL


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS,
                  MIN_AUC: ExecutionParameter(type=float),
                  MIN_ACCURACY: ExecutionParameter(type=float),
                  MAX_AUC_DROP: ExecutionParameter(type=float),
                  # Absent: slice_gates.DEFAULTS (the values pipeline/config.py's Thresholds default to).
                  MIN_SLICE_AUC: ExecutionParameter(type=float, optional=True),
                  MAX_SLICE_AUC_GAP: ExecutionParameter(type=float, optional=True),
                  MAX_SLICE_AUC_DROP: ExecutionParameter(type=float, optional=True),
                  MIN_SLICE_CLASS_EXAMPLES: ExecutionParameter(type=int, optional=True),
                  MAX_EVAL_EXAMPLES: ExecutionParameter(type=int, optional=True),
                  # Absent: AUTO.
                  EVALUATION_ENGINE: ExecutionParameter(type=str, optional=True)}


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and not has_model(baselines[0]):
            input_dict = {**input_dict, key: []}
        evaluation = output_dict[standard_component_specs.EVALUATION_KEY][0]
        overall_gates = tuple(float(exec_properties[name]) for name in (MIN_AUC, MIN_ACCURACY, MAX_AUC_DROP))
        thresholds = slice_thresholds(exec_properties)
        config = json_format.Parse(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], tfma.EvalConfig())
        why_tfma = self._why_tfma(input_dict, exec_properties, config, overall_gates)
        result = None
        if why_tfma is None:
            try:
                result = self._evaluate_in_process(input_dict, output_dict, exec_properties, config, overall_gates,
                                                   thresholds)
            except model_evaluation.NotMirrored as e:
                why_tfma = str(e)
                _clear(evaluation.uri)
                _clear(output_dict[standard_component_specs.BLESSING_KEY][0].uri)
        if result is None:
            logging.info('Evaluator: TFMA evaluates (%s)', why_tfma)
            result = self._evaluate_with_tfma(input_dict, output_dict, exec_properties, config, overall_gates,
                                              thresholds)
            evaluation.set_string_custom_property(PATH_REASON_PROPERTY, why_tfma)
        slices, total, kept = result
        evaluation.set_string_custom_property(PATH_PROPERTY, IN_PROCESS if why_tfma is None else TFMA)
        evaluation.set_int_custom_property('eval_examples', total)
        evaluation.set_int_custom_property('evaluated_examples', kept)
        for name, value in overall_metrics(evaluation.uri).items():
            if math.isfinite(value):  # NaN (precision with no positive prediction) is no value ML Metadata stores
                evaluation.set_float_custom_property(METRIC_PREFIX + name, value)
        gates, unexplained = read_gates(evaluation.uri, *overall_gates, slices=slices, slice_thresholds=thresholds)
        evaluation.set_string_custom_property(slice_gates.GATES_PROPERTY, slice_gates.dump_gates(gates))
        evaluation.set_string_custom_property(slice_gates.SLICES_PROPERTY, slice_gates.dump_counts(slices))
        evaluation.set_int_custom_property(MIN_SLICE_CLASS_EXAMPLES, thresholds.min_class_examples)
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        blessed = blessing.get_int_custom_property('blessed') == 1
        if blessed and any(g.passed is False for g in gates):
            refuse(blessing)  # a gate TFMA does not check (the gap below overall) failed
            blessed = False
        if not blessed:
            reason = slice_gates.refusal(gates, unexplained) or 'TFMA did not validate the model (see its validations)'
            blessing.set_string_custom_property(slice_gates.REASON_PROPERTY, reason)
            logging.warning('Not blessed: %s', reason)
        for found in slices:
            if not found.judged:
                logging.info('Slice %s %s', found.label, found.why_not_judged(thresholds.min_class_examples))

    def _why_tfma(self, input_dict, exec_properties, config: tfma.EvalConfig, overall_gates) -> Optional[str]:
        """Why TFMA's executor evaluates rather than the in-process path; None when the in-process path may."""
        engine = exec_properties.get(EVALUATION_ENGINE) or AUTO
        if engine not in (AUTO, TFMA):
            raise ValueError(f'{EVALUATION_ENGINE} must be {AUTO} or {TFMA}, not {engine!r}')
        if engine == TFMA:
            return f'{EVALUATION_ENGINE} is {TFMA}'
        if not beam_runner.in_process(self._beam_pipeline_args or []):
            return 'Beam runs remotely'
        examples = input_dict[standard_component_specs.EXAMPLES_KEY]
        if len(examples) != 1 or not record_files.gzipped_examples(examples):
            return 'examples are not one artifact of gzipped tf.Example records'
        if len(input_dict.get(standard_component_specs.MODEL_KEY) or []) != 1:
            return 'not one candidate model'
        if (json_utils.loads(exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY, 'null'))
                not in (None, [], [EVAL_SPLIT])):
            return 'splits other than eval'
        if (exec_properties.get(standard_component_specs.MODULE_FILE_KEY)
                or exec_properties.get(standard_component_specs.MODULE_PATH_KEY)
                or exec_properties.get(standard_component_specs.FEATURE_SLICING_SPEC_KEY)):
            return 'a user module or a feature slicing spec'
        has_baseline = bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY))
        return model_evaluation.unmirrored(_with_defaults(gated(config, *overall_gates), has_baseline))

    def _evaluate_in_process(self, input_dict, output_dict, exec_properties, config, overall_gates, thresholds):
        """The whole eval split, evaluated by components/model_evaluation.py; the blessing as TFX's executor
        writes it. (slices, examples in the split, examples evaluated)."""
        self._log_startup(input_dict, output_dict, {})
        examples = input_dict[standard_component_specs.EXAMPLES_KEY][0]
        candidate = input_dict[standard_component_specs.MODEL_KEY][0]
        baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        has_baseline = bool(baselines)
        # Scored once, with the gates as they stand before the gated slices are counted: the counts come from
        # the same pass (the raw columns), and the per-slice thresholds they decide change no metric.
        scoring_config = _with_defaults(gated(config, *overall_gates), has_baseline)
        paths = {spec.name: _serving_path(baselines[0] if spec.is_baseline else candidate)
                 for spec in scoring_config.model_specs}
        evaluation_uri = output_dict[standard_component_specs.EVALUATION_KEY][0].uri
        label_columns = (features_lib.LABEL.tips_column, features_lib.LABEL.fare_column)
        started = time.perf_counter()
        scored = model_evaluation.score(scoring_config, paths, [io_utils.all_files_pattern(
            artifact_utils.get_split_uri([examples], EVAL_SPLIT))],
            extra_columns=tuple(features_lib.GATED_SLICE_COLUMNS) + label_columns)
        done = time.perf_counter()
        slices = slice_gates.judge(scored_slice_counts(scored.columns), thresholds.min_class_examples)
        eval_config = _with_defaults(gated(config, *overall_gates, slices=slices, slice_thresholds=thresholds),
                                     has_baseline)
        model_evaluation.write(eval_config, scored, paths, evaluation_uri)
        seconds = time.perf_counter() - started
        rows = scored.rows
        logging.info('Evaluator: in process, the whole eval split: %s examples, %d model(s), %.1f s (%.0f examples/s;'
                     ' scored in %.1f s, metrics and files in %.1f s)', f'{rows:,}', len(paths), seconds,
                     rows / max(seconds, 1e-9), done - started, time.perf_counter() - done)
        _write_blessing(output_dict[standard_component_specs.BLESSING_KEY][0], evaluation_uri, candidate,
                        baselines[0] if baselines else None, exec_properties.get('current_component_id'))
        return slices, rows, rows

    def _evaluate_with_tfma(self, input_dict, output_dict, exec_properties, config, overall_gates, thresholds):
        """TFX's executor (TFMA on Beam) on the eval split, sampled to `max_eval_examples`."""
        examples_key = standard_component_specs.EXAMPLES_KEY
        examples, total, kept = sample_eval_split(input_dict[examples_key][0],
                                                  int(exec_properties.get(MAX_EVAL_EXAMPLES) or 0),
                                                  os.path.join(self._get_tmp_dir(), 'eval_sample'))
        slices = slice_gates.judge(slice_counts(examples), thresholds.min_class_examples)
        eval_config = gated(config, *overall_gates, slices=slices, slice_thresholds=thresholds)
        config_key = standard_component_specs.EVAL_CONFIG_KEY
        exec_properties = {**exec_properties, config_key: json_format.MessageToJson(eval_config)}
        exec_properties.pop(EVALUATION_ENGINE, None)
        super().Do({**input_dict, examples_key: [examples]}, output_dict, exec_properties)
        return slices, total, kept


def _with_defaults(eval_config: tfma.EvalConfig, has_baseline: bool) -> tfma.EvalConfig:
    """The EvalConfig as TFX's executor hands it to TFMA (rubber stamp: no change thresholds without a baseline)."""
    return tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=has_baseline, rubber_stamp=True)


def _serving_path(model) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def _clear(uri: str) -> None:
    """Empties an output directory the in-process path began to write, before TFMA writes it."""
    if tf.io.gfile.exists(uri):
        tf.io.gfile.rmtree(uri)
    tf.io.gfile.makedirs(uri)


def _write_blessing(blessing, evaluation_uri: str, candidate, baseline, component_id: Optional[str]) -> None:
    """The blessing TFX's executor writes after TFMA validated (tfx/components/evaluator/executor.py)."""
    blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, candidate.uri)
    blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, candidate.id)
    if baseline is not None:
        blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                            baseline.uri)
        blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id)
    if component_id is not None:
        blessing.set_string_custom_property('component_id', component_id)
    if tfma.load_validation_result(evaluation_uri).validation_ok:
        io_utils.write_string_file(os.path.join(blessing.uri, evaluator_constants.BLESSED_FILE_NAME), '')
        blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                         evaluator_constants.BLESSED_VALUE)
    else:
        io_utils.write_string_file(os.path.join(blessing.uri, evaluator_constants.NOT_BLESSED_FILE_NAME), '')
        blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                         evaluator_constants.NOT_BLESSED_VALUE)


def refuse(blessing) -> None:
    """Takes a blessing TFMA gave away, as TFX's executor writes a refusal (NOT_BLESSED, blessed=0)."""
    blessed_file = os.path.join(blessing.uri, evaluator_constants.BLESSED_FILE_NAME)
    if tf.io.gfile.exists(blessed_file):
        tf.io.gfile.remove(blessed_file)
    io_utils.write_string_file(os.path.join(blessing.uri, evaluator_constants.NOT_BLESSED_FILE_NAME), '')
    blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     evaluator_constants.NOT_BLESSED_VALUE)


def slice_thresholds(exec_properties) -> SliceThresholds:
    """The per-slice gates' values from the exec properties; each one absent is its default (slice_gates)."""
    given = {field: exec_properties.get(name) for field, name in (
        ('min_auc', MIN_SLICE_AUC), ('max_auc_gap', MAX_SLICE_AUC_GAP), ('max_auc_drop', MAX_SLICE_AUC_DROP),
        ('min_class_examples', MIN_SLICE_CLASS_EXAMPLES))}
    return dataclasses.replace(slice_gates.DEFAULTS, **{
        field: (int(value) if field == 'min_class_examples' else float(value))
        for field, value in given.items() if value is not None})


def sample_eval_split(examples, max_examples: int, sample_dir: str):
    """(examples to evaluate, examples in the eval split, examples kept): the artifact itself when the split
    is small enough, else a copy whose eval split is every k-th record, written to `sample_dir`."""
    files = tf.io.gfile.glob(os.path.join(examples.uri, f'Split-{EVAL_SPLIT}', '*'))
    records = tf.data.TFRecordDataset(files, compression_type='GZIP')
    total = record_count(files)
    if not max_examples or total <= max_examples:
        return examples, total, total
    step = math.ceil(total / max_examples)
    target = os.path.join(sample_dir, f'Split-{EVAL_SPLIT}')
    tf.io.gfile.makedirs(target)
    kept = 0
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(target, 'data_tfrecord-00000-of-00001.gz'), options) as writer:
        for record in batched(records.shard(step, 0)):
            writer.write(record)
            kept += 1
    sampled = copy.deepcopy(examples)
    sampled.uri = sample_dir
    sampled.split_names = artifact_utils.encode_split_names([EVAL_SPLIT])
    return sampled, total, kept


def overall_metrics(evaluation_uri: str) -> dict:
    """The candidate's scalar metrics on the overall slice (not the baseline's, not diffs)."""
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        # A cross-slice record (an EvalConfig with cross_slicing_specs) has no slice key either: not overall.
        if not slice_metrics.slice_key.single_slice_keys and not slice_metrics.HasField('cross_slice_key'):
            return {kv.key.name: kv.value.double_value.value for kv in slice_metrics.metric_keys_and_values
                    if kv.value.HasField('double_value') and not kv.key.HasField('sub_key')
                    and not kv.key.is_diff and kv.key.model_name != 'baseline'}
    return {}


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (TFMA) with its blessing gates as parameters."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, baseline_model: types.BaseChannel,
                 eval_config: tfma.EvalConfig, min_auc: FloatParameter, min_accuracy: FloatParameter,
                 max_auc_drop: FloatParameter, schema: Optional[types.BaseChannel] = None,
                 max_eval_examples: int = 0, min_slice_auc: Optional[FloatParameter] = None,
                 max_slice_auc_gap: Optional[FloatParameter] = None,
                 max_slice_auc_drop: Optional[FloatParameter] = None,
                 min_slice_class_examples: Optional[Union[int, data_types.RuntimeParameter]] = None,
                 evaluation_engine: Optional[str] = None):
        # A slice gate or engine not given is no exec property at all (the executor applies its default), so a
        # DAG that passes none compiles as before.
        optional = {name: value for name, value in (
            (MIN_SLICE_AUC, min_slice_auc), (MAX_SLICE_AUC_GAP, max_slice_auc_gap),
            (MAX_SLICE_AUC_DROP, max_slice_auc_drop), (MIN_SLICE_CLASS_EXAMPLES, min_slice_class_examples))
            if value is not None}
        if evaluation_engine is not None:  # absent unless given: the compiled spec stays as it was
            optional[EVALUATION_ENGINE] = evaluation_engine
        super().__init__(spec=EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, eval_config=eval_config, schema=schema,
            min_auc=min_auc, min_accuracy=min_accuracy, max_auc_drop=max_auc_drop,
            max_eval_examples=max_eval_examples, **optional,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
