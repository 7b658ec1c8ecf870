"""Evaluator whose gates are float exec properties, and whose baseline may be empty.

Two things TFX's Evaluator leaves to the pipeline author:
- The thresholds live inside the EvalConfig proto, where KubeflowV2DagRunner
  cannot put a runtime parameter. Here `min_auc`, `min_accuracy` and
  `max_auc_drop` are float exec properties (Kubeflow Pipelines parameters),
  and the executor adds the gates they define to the EvalConfig it is given.
- The first run has nothing pushed yet, so the baseline is an empty Model
  artifact; the executor drops it, and TFMA validates absolute thresholds only
  (TFX's own rubber stamp when there is no baseline).

A large eval split is evaluated on an evenly spaced sample of at most
`max_eval_examples` (TFMA scores a small fraction of the model's own rate:
docs/performance.md#tfmas-rate): candidate and baseline on the same examples, the split's size
and the sample's recorded on the evaluation (`eval_examples`,
`evaluated_examples`), so nobody mistakes the one for the other.

It also writes the candidate's overall metrics onto the evaluation artifact
(`metric_<name>` custom properties), so ML Metadata answers "how good was
each run's model" without TFMA loading the output (seconds of imports), and
Kubeflow's UI shows them on the artifact.
"""

import copy
import math
import os
from typing import Optional, Union

import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.baseline_model import has_model
from components.record_files import batched, record_count

MIN_AUC, MIN_ACCURACY, MAX_AUC_DROP = 'min_auc', 'min_accuracy', 'max_auc_drop'
MAX_EVAL_EXAMPLES = 'max_eval_examples'
EVAL_SPLIT = 'eval'
METRIC_PREFIX = 'metric_'
FloatParameter = Union[float, data_types.RuntimeParameter]


def gated(eval_config: tfma.EvalConfig, min_auc: float, min_accuracy: float, max_auc_drop: float) -> tfma.EvalConfig:
    """`eval_config` plus the blessing gates: AUC and accuracy floors, and how far
    AUC may fall below the baseline's. Gates apply to the overall slice only: a
    slice such as payment_type "Unknown" has a few dozen rows, too few to judge by."""
    def overall(threshold):
        return tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)

    gates = tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name='AUC', per_slice_thresholds=[overall(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_auc}),
            # Ignored when there is no baseline (the first push).
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_auc_drop})))]),
        tfma.MetricConfig(class_name='BinaryAccuracy', per_slice_thresholds=[overall(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_accuracy})))]),
    ])
    result = tfma.EvalConfig()
    result.CopyFrom(eval_config)
    result.metrics_specs.append(gates)
    return result


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS,
                  MIN_AUC: ExecutionParameter(type=float),
                  MIN_ACCURACY: ExecutionParameter(type=float),
                  MAX_AUC_DROP: ExecutionParameter(type=float),
                  MAX_EVAL_EXAMPLES: ExecutionParameter(type=int, optional=True)}


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and not has_model(baselines[0]):
            input_dict = {**input_dict, key: []}
        config_key = standard_component_specs.EVAL_CONFIG_KEY
        eval_config = json_format.Parse(exec_properties[config_key], tfma.EvalConfig())
        eval_config = gated(eval_config, float(exec_properties[MIN_AUC]), float(exec_properties[MIN_ACCURACY]),
                            float(exec_properties[MAX_AUC_DROP]))
        exec_properties = {**exec_properties, config_key: json_format.MessageToJson(eval_config)}
        evaluation = output_dict[standard_component_specs.EVALUATION_KEY][0]
        examples_key = standard_component_specs.EXAMPLES_KEY
        examples, total, kept = sample_eval_split(input_dict[examples_key][0],
                                                  int(exec_properties.get(MAX_EVAL_EXAMPLES) or 0),
                                                  os.path.join(self._get_tmp_dir(), 'eval_sample'))
        super().Do({**input_dict, examples_key: [examples]}, output_dict, exec_properties)
        evaluation.set_int_custom_property('eval_examples', total)
        evaluation.set_int_custom_property('evaluated_examples', kept)
        for name, value in overall_metrics(evaluation.uri).items():
            if math.isfinite(value):  # NaN (precision with no positive prediction) is no value ML Metadata stores
                evaluation.set_float_custom_property(METRIC_PREFIX + name, value)


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
        if not slice_metrics.slice_key.single_slice_keys:
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
                 max_eval_examples: int = 0):
        super().__init__(spec=EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, eval_config=eval_config, schema=schema,
            min_auc=min_auc, min_accuracy=min_accuracy, max_auc_drop=max_auc_drop,
            max_eval_examples=max_eval_examples,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
