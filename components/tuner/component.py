"""The Tuner as a TFX component: TFX's Tuner spec plus whether to tune, its budget and where tunings are
recorded, as plain exec properties (run parameters on Kubeflow); it runs `executor.Executor`."""

from typing import Optional, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.tuner.executor import (EVAL_STEPS, KNOWN_TUNING, MAX_SECONDS, MAX_TRIALS, METADATA_CONNECTION,
                                       RECORDS_DIR,
                                       TRIAL_STEPS, TUNE, Executor)

IntParameter = Union[int, data_types.RuntimeParameter]
FloatParameter = Union[float, data_types.RuntimeParameter]


class TunerSpec(standard_component_specs.TunerSpec):
    PARAMETERS = {**standard_component_specs.TunerSpec.PARAMETERS,
                  TUNE: ExecutionParameter(type=int),
                  MAX_TRIALS: ExecutionParameter(type=int),
                  MAX_SECONDS: ExecutionParameter(type=float),
                  TRIAL_STEPS: ExecutionParameter(type=int),
                  EVAL_STEPS: ExecutionParameter(type=int),
                  RECORDS_DIR: ExecutionParameter(type=str),
                  METADATA_CONNECTION: ExecutionParameter(type=str, optional=True),
                  KNOWN_TUNING: ExecutionParameter(type=str, optional=True)}


class Tuner(base_component.BaseComponent):
    """TFX's Tuner (`tuner_fn` by module path) that searches only when `tune` is 1; otherwise it passes on
    the last tuning's values, or the defaults in `custom_config`, and records which.

    `known_tuning` names the newest tuning record when the DAG was built (local runs build it per run): a
    tuning since then changes it, so a cached Tuner never hands on values older than the last tuning.
    """

    SPEC_CLASS = TunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel, schema: types.BaseChannel,
                 tuner_fn: str, tune: IntParameter, max_trials: IntParameter, max_seconds: FloatParameter,
                 trial_steps: IntParameter, eval_steps: IntParameter, records_dir: str,
                 metadata_connection: str = '', custom_config: Optional[dict] = None, known_tuning: str = ''):
        super().__init__(spec=TunerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, tuner_fn=tuner_fn,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            custom_config=json_utils.dumps(custom_config or {}),
            tune=tune, max_trials=max_trials, max_seconds=max_seconds, trial_steps=trial_steps, eval_steps=eval_steps,
            records_dir=records_dir, metadata_connection=metadata_connection, known_tuning=known_tuning,
            best_hyperparameters=types.Channel(type=standard_artifacts.HyperParameters),
            tuner_results=types.Channel(type=standard_artifacts.TunerResults)))
