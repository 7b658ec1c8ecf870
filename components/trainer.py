"""Trainer whose step counts are plain integer exec properties, and whose model
carries the statistics and schema of the data it was trained on, and the
version of the code that trained it (components.code_version).

TFX's Trainer takes its steps inside the TrainArgs/EvalArgs protos, and
KubeflowV2DagRunner cannot put a runtime parameter inside a proto (protobuf
rejects it at build time). With `train_steps` and `eval_steps` as integer
exec properties, a Kubeflow Pipelines run sets them like any other pipeline
parameter; the executor writes them into the protos TFX's GenericExecutor
reads, so `run_fn` sees the usual `FnArgs.train_steps`/`eval_steps`.

Training covers the data by default: with `train_steps` 0 the executor takes
ceil(`train_epochs` x training rows / batch size) steps, the rows from the
training split's statistics and the batch size from
`custom_config['hyperparameters']['batch_size']`. The model artifact records
what was done (`train_steps`, `train_epochs`, `train_rows`, `train_batch_size`),
whichever way the steps were set.

With `statistics` (StatisticsGen's output) wired in, the exported SavedModel
gets, under `assets.extra/`, the training split's statistics and the schema
the data was validated against. Every pushed version then says what it learned
from, so drift and skew checks need no Resolver or metadata store to find it.
"""

import math
import os
from typing import Optional, Union

from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils, path_utils, proto_utils

from components import code_version

TRAIN_STEPS, EVAL_STEPS, TRAIN_EPOCHS = 'train_steps', 'eval_steps', 'train_epochs'
STATISTICS, DRIFT_REPORT = 'statistics', 'drift_report'
# The drift check's findings (custom properties named so) are copied onto the
# candidate model, so a release process sees "trained on drifted data".
DRIFT_PROPERTY_PREFIX = 'drift_'
# What a pushed version carries about its training data, next to TF Serving's
# warm-up file: TFDV statistics of the training split and the curated schema.
TRAINING_STATISTICS_FILE = 'assets.extra/training_statistics.pb'
SCHEMA_FILE = 'assets.extra/schema.pbtxt'
TRAIN_SPLIT = 'train'
# A run_fn may say what training did (early stopping) in this JSON file in the model run
# directory: steps_taken, steps_kept (those of the weights it exported). It is recorded on the model.
TRAINING_RECORD = 'training.json'
IntParameter = Union[int, data_types.RuntimeParameter]
FloatParameter = Union[float, data_types.RuntimeParameter]


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              STATISTICS: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
              DRIFT_REPORT: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True)}
    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  TRAIN_STEPS: ExecutionParameter(type=int),
                  EVAL_STEPS: ExecutionParameter(type=int),
                  TRAIN_EPOCHS: ExecutionParameter(type=float, optional=True)}


def training_rows(statistics_uri: str) -> int:
    """The training split's rows, as StatisticsGen counted them."""
    path = os.path.join(statistics_uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb')
    return int(statistics_pb2.DatasetFeatureStatisticsList.FromString(
        io_utils.read_bytes_file(path)).datasets[0].num_examples)


def _batch_size(custom_config: Optional[str]) -> Optional[int]:
    hyperparameters = (json_utils.loads(custom_config or 'null') or {}).get('hyperparameters') or {}
    return int(hyperparameters['batch_size']) if hyperparameters.get('batch_size') else None


def steps_for(epochs: float, rows: int, batch_size: int) -> int:
    """Steps of `batch_size` that pass over `rows` `epochs` times (at least one)."""
    return max(1, math.ceil(epochs * rows / batch_size))


class Executor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        properties = dict(exec_properties)
        batch_size = _batch_size(properties.get(standard_component_specs.CUSTOM_CONFIG_KEY))
        rows = training_rows(artifact_utils.get_single_uri(input_dict[STATISTICS])) if input_dict.get(STATISTICS) else None
        if not int(properties[TRAIN_STEPS]):  # 0: cover the data
            epochs = float(properties.get(TRAIN_EPOCHS) or 0)
            if not (epochs > 0 and rows and batch_size):
                raise ValueError('train_steps 0 takes its steps from train_epochs (above 0), the training rows '
                                 '(the statistics input) and custom_config hyperparameters.batch_size; got '
                                 f'{epochs} epochs, {rows} rows, batch size {batch_size}')
            properties[TRAIN_STEPS] = steps_for(epochs, rows, batch_size)
        for key, steps, proto in ((standard_component_specs.TRAIN_ARGS_KEY, TRAIN_STEPS, trainer_pb2.TrainArgs()),
                                  (standard_component_specs.EVAL_ARGS_KEY, EVAL_STEPS, trainer_pb2.EvalArgs())):
            if properties.get(key):
                proto_utils.json_to_proto(properties[key], proto)
            # KFP passes every number as a double; TFX casts integer parameters back.
            proto.num_steps = int(properties[steps])
            if proto.num_steps < 1:
                raise ValueError(f'{steps} must be at least 1, got {proto.num_steps}')
            properties[key] = proto_utils.proto_to_json(proto)
        super().Do(input_dict, output_dict, properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        # What code trained it, on the model itself: the one record every runner keeps (Kubeflow
        # records an executor's artifact properties; it has no run context we could write to).
        for name, value in code_version.current().properties().items():
            model.set_string_custom_property(name, value)
        steps = int(properties[TRAIN_STEPS])
        model.set_int_custom_property('train_steps', steps)
        if batch_size:
            model.set_int_custom_property('train_batch_size', batch_size)
        if rows and batch_size:
            model.set_int_custom_property('train_rows', rows)
            model.set_float_custom_property('train_epochs', steps * batch_size / rows)
        record_path = os.path.join(artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_RUN_KEY]),
                                   TRAINING_RECORD)
        if fileio.exists(record_path):
            record = json_utils.loads(io_utils.read_string_file(record_path))
            for key in ('steps_taken', 'steps_kept'):
                if key in record:
                    model.set_int_custom_property(key, int(record[key]))
        serving_dir = path_utils.serving_model_path(model.uri)
        if input_dict.get(STATISTICS):
            statistics = artifact_utils.get_single_instance(input_dict[STATISTICS])
            io_utils.copy_file(os.path.join(statistics.uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb'),
                               os.path.join(serving_dir, TRAINING_STATISTICS_FILE), overwrite=True)
        if input_dict.get(DRIFT_REPORT):
            report = artifact_utils.get_single_instance(input_dict[DRIFT_REPORT])
            for name, value in report.mlmd_artifact.custom_properties.items():
                if name.startswith(DRIFT_PROPERTY_PREFIX):
                    model.set_string_custom_property(name, value.string_value)
        schema_uri = artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])
        io_utils.copy_file(io_utils.get_only_uri_in_dir(schema_uri), os.path.join(serving_dir, SCHEMA_FILE),
                           overwrite=True)


class Trainer(base_component.BaseComponent):
    """TFX's Trainer (GenericExecutor, `run_fn` by module path) with steps as parameters;
    its model carries the training statistics and schema (`assets.extra/`)."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel, schema: types.BaseChannel,
                 run_fn: str, train_steps: IntParameter, eval_steps: IntParameter,
                 train_epochs: Optional[FloatParameter] = None, statistics: Optional[types.BaseChannel] = None, drift_report: Optional[types.BaseChannel] = None,
                 custom_config: Optional[dict] = None):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, statistics=statistics,
            drift_report=drift_report,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            run_fn=run_fn, custom_config=json_utils.dumps(custom_config or {}),
            train_steps=train_steps, eval_steps=eval_steps, train_epochs=train_epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
