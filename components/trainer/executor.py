"""The Trainer's executor: TFX's GenericExecutor, with the steps as integer exec properties, and a
model that records its training (`training_record`) and carries its training data's statistics
and schema."""

import json
import os
from typing import Optional

from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, path_utils, proto_utils

from components import code_version
from components.trainer import training_record
from components.trainer.training_record import DRIFT_PROPERTY_PREFIX, TRAIN_SPLIT
from foundation.model_files import SCHEMA_FILE, TRAINING_RECORD, TRAINING_STATISTICS_FILE
from taxi_model.hyperparameters import Hyperparameters

# The Trainer's own inputs and exec properties, beside TFX's (the component's spec declares them).
TRAIN_STEPS, EVAL_STEPS, TRAIN_EPOCHS = 'train_steps', 'eval_steps', 'train_epochs'
STATISTICS, DRIFT_REPORT = 'statistics', 'drift_report'


def training_rows(statistics_uri: str) -> int:
    """The training split's rows, as StatisticsGen counted them."""
    path = os.path.join(statistics_uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb')
    return int(statistics_pb2.DatasetFeatureStatisticsList.FromString(
        io_utils.read_bytes_file(path)).datasets[0].num_examples)


def _batch_size(custom_config: Optional[str]) -> Optional[int]:
    hyperparameters = (json_utils.loads(custom_config or 'null') or {}).get('hyperparameters') or {}
    return int(hyperparameters['batch_size']) if hyperparameters.get('batch_size') else None


def with_tuned(custom_config: Optional[str], hyperparameters_uri: str) -> str:
    """`custom_config` with the HyperParameters artifact's values (TFX's best_hyperparameters file, the
    search space's encoding) laid over its hyperparameters: what `run_fn` reads and the steps follow."""
    config = json_utils.loads(custom_config or 'null') or {}
    tuned = json_utils.loads(io_utils.read_string_file(io_utils.get_only_uri_in_dir(hyperparameters_uri)))
    hp = Hyperparameters.from_custom_config(config).with_tuned(tuned.get('values') or {})
    return json_utils.dumps({**config, **hp.to_custom_config()})


# What the model records of the hyperparameters it was trained with: the values, where they came from
# (components.tuner.tuning_records.SOURCES) and the HyperParameters artifact of the tuning that found them.
HYPERPARAMETERS_PROPERTIES = {'source': 'hyperparameters_source', 'tuned_uri': 'hyperparameters_tuned_uri'}


class Executor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        properties = dict(exec_properties)
        tuned = input_dict.get(standard_component_specs.HYPERPARAMETERS_KEY)
        if tuned:
            properties[standard_component_specs.CUSTOM_CONFIG_KEY] = with_tuned(
                properties.get(standard_component_specs.CUSTOM_CONFIG_KEY), artifact_utils.get_single_uri(tuned))
        batch_size = _batch_size(properties.get(standard_component_specs.CUSTOM_CONFIG_KEY))
        rows = training_rows(artifact_utils.get_single_uri(input_dict[STATISTICS])) if input_dict.get(STATISTICS) else None
        if not int(properties[TRAIN_STEPS]):  # 0: cover the data
            properties[TRAIN_STEPS] = training_record.steps_covering(float(properties.get(TRAIN_EPOCHS) or 0), rows,
                                                                     batch_size)
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
        trained_with = json_utils.loads(properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null') or {}
        model.set_string_custom_property('hyperparameters', json.dumps(trained_with.get('hyperparameters') or {},
                                                                       sort_keys=True))
        if tuned:
            artifact = artifact_utils.get_single_instance(tuned)
            for name, recorded in HYPERPARAMETERS_PROPERTIES.items():
                if artifact.has_custom_property(name):
                    model.set_string_custom_property(recorded, artifact.get_string_custom_property(name))
        # What code trained it, on the model itself: the one record every runner keeps (Kubeflow
        # records an executor's artifact properties; it has no run context we could write to).
        for name, value in code_version.current().properties().items():
            model.set_string_custom_property(name, value)
        for name, value in training_record.model_properties(int(properties[TRAIN_STEPS]), batch_size, rows).items():
            if isinstance(value, float):
                model.set_float_custom_property(name, value)
            else:
                model.set_int_custom_property(name, value)
        record_path = os.path.join(artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_RUN_KEY]),
                                   TRAINING_RECORD)
        if fileio.exists(record_path):
            for name, value in training_record.reported(json_utils.loads(io_utils.read_string_file(record_path))).items():
                model.set_int_custom_property(name, value)
        serving_dir = path_utils.serving_model_path(model.uri)
        if input_dict.get(STATISTICS):
            statistics = artifact_utils.get_single_instance(input_dict[STATISTICS])
            io_utils.copy_file(os.path.join(statistics.uri, f'Split-{TRAIN_SPLIT}', 'FeatureStats.pb'),
                               os.path.join(serving_dir, TRAINING_STATISTICS_FILE), overwrite=True)
        if input_dict.get(DRIFT_REPORT):
            report = artifact_utils.get_single_instance(input_dict[DRIFT_REPORT])
            for name in report.mlmd_artifact.custom_properties:
                if name.startswith(DRIFT_PROPERTY_PREFIX):
                    # The getter, not .string_value: on Kubeflow an input's custom properties are JSON values.
                    model.set_string_custom_property(name, report.get_string_custom_property(name))
        schema_uri = artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])
        io_utils.copy_file(io_utils.get_only_uri_in_dir(schema_uri), os.path.join(serving_dir, SCHEMA_FILE),
                           overwrite=True)
